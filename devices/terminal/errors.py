"""The terminal profile's one error type.

Everything that can go wrong while reading or building a terminal-profile message, frame or topic
raises `TerminalProfileError`, a `ValueError`, so a caller that already guards against bad values
needs no new ``except`` clause. What went wrong is data, not prose: `reason` is a stable code from
`ErrorReason`, `field` names the offending JSON key or topic part (when there is one), and
`message_id` carries an event id that was readable even though the rest of the event was not, so a
gateway can still answer that event on the terminal's screen (``ref``).
"""

from __future__ import annotations

import enum

__all__ = ["ErrorReason", "TerminalProfileError"]


class ErrorReason(enum.StrEnum):
    """Stable machine-readable codes for `TerminalProfileError.reason`."""

    TOO_LARGE = "too_large"
    NOT_UTF8 = "not_utf8"
    NOT_JSON = "not_json"
    DUPLICATE_KEY = "duplicate_key"
    NOT_OBJECT = "not_object"
    BAD_VERSION = "bad_version"
    MISSING_FIELD = "missing_field"
    UNKNOWN_FIELD = "unknown_field"
    BAD_TYPE = "bad_type"
    OUT_OF_RANGE = "out_of_range"
    BAD_FORMAT = "bad_format"
    UNKNOWN_OP = "unknown_op"
    UNKNOWN_VALUE = "unknown_value"
    INCONSISTENT = "inconsistent"
    BAD_FRAME = "bad_frame"
    BAD_TOPIC = "bad_topic"


class TerminalProfileError(ValueError):
    """A terminal-profile message, frame, field or topic is invalid.

    Raised both for bytes received from a peer and for messages built locally with invalid values;
    the profile never lets an invalid message exist, whichever side made it.
    """

    reason: ErrorReason
    field: str | None
    message_id: str | None

    def __init__(
        self,
        reason: ErrorReason,
        detail: str = "",
        *,
        field: str | None = None,
        message_id: str | None = None,
    ) -> None:
        text = reason.value if not detail else f"{reason.value}: {detail}"
        if field is not None:
            text = f"{text} (field {field!r})"
        super().__init__(text)
        self.reason = reason
        self.field = field
        self.message_id = message_id
