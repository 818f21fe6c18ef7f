"""Secret files: created once, written atomically with mode 0600, refused if others may read."""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path

from trust.errors import KeyFileError

__all__ = ["load_or_create_secret", "read_secret", "write_secret"]


def write_secret(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, readable and writable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_secret(path: Path) -> bytes:
    """Read a secret file, refusing one that group or others may read or write."""
    try:
        st = path.stat()
    except FileNotFoundError as exc:
        raise KeyFileError(str(path), "missing") from exc
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(str(path), f"mode {stat.S_IMODE(st.st_mode):04o} is too open, want 0600")
    return path.read_bytes()


def load_or_create_secret(path: Path, create: Callable[[], bytes]) -> bytes:
    """Return the secret stored at ``path``, creating it with ``create()`` on first use."""
    if not path.exists():
        write_secret(path, create())
    return read_secret(path)
