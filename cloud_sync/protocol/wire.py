"""Bounded, strict JSON for the sync protocol: the one place bytes become Python values.

Messages are UTF-8 JSON objects encoded compactly with sorted keys (so an encoding is
reproducible byte for byte, which the signed-command format relies on). Decoding refuses oversized
input before parsing, duplicate keys, NaN/Infinity, floats, and nesting deeper than a few levels.
"""

from __future__ import annotations

import json
import re
from typing import Any

from cloud_sync.protocol.errors import SyncProtocolError

__all__ = [
    "ID_PATTERN",
    "MAX_BATCH_BYTES",
    "MAX_COMMAND_BYTES",
    "check_id",
    "check_int",
    "check_str",
    "decode_object",
    "encode",
]

MAX_BATCH_BYTES = 1 << 20
MAX_COMMAND_BYTES = 4096
_MAX_DEPTH = 6
ID_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def encode(obj: dict[str, Any]) -> bytes:
    """Compact, key-sorted UTF-8 JSON."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise SyncProtocolError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _reject_constant(name: str) -> Any:
    raise SyncProtocolError(f"{name} is not allowed")


def _reject_float(text: str) -> Any:
    raise SyncProtocolError("floats are not allowed; use integers in fixed units")


def _depth(value: Any, level: int = 0) -> int:
    if level > _MAX_DEPTH:
        raise SyncProtocolError("nesting too deep")
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level)
    return level


def decode_object(data: bytes, limit: int) -> dict[str, Any]:
    """Parse ``data`` as one JSON object of at most ``limit`` bytes."""
    if len(data) > limit:
        raise SyncProtocolError(f"message of {len(data)} bytes exceeds {limit}")
    try:
        text = data.decode("utf-8")
        obj = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_constant=_reject_constant,
            parse_float=_reject_float,
        )
    except UnicodeDecodeError as exc:
        raise SyncProtocolError("not UTF-8") from exc
    except RecursionError as exc:
        raise SyncProtocolError("nesting too deep") from exc
    except json.JSONDecodeError as exc:
        raise SyncProtocolError(f"not JSON: {exc.msg}") from exc
    if not isinstance(obj, dict):
        raise SyncProtocolError("a message is a JSON object")
    _depth(obj)
    return obj


def check_id(value: Any, what: str) -> str:
    """An identifier: 1-64 characters of ``[A-Za-z0-9_.:-]``."""
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise SyncProtocolError(f"{what} must be an identifier of 1-64 [A-Za-z0-9_.:-]")
    return value


def check_int(value: Any, what: str, lo: int, hi: int) -> int:
    """An integer (not a bool) within ``[lo, hi]``."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise SyncProtocolError(f"{what} must be an integer in [{lo}, {hi}]")
    return value


def check_str(value: Any, what: str, max_len: int) -> str:
    """A string of at most ``max_len`` characters."""
    if not isinstance(value, str) or len(value) > max_len:
        raise SyncProtocolError(f"{what} must be a string of at most {max_len} characters")
    return value
