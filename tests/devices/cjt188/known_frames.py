"""The hand-checked CJ/T 188 frames of PROTOCOLS.md §3.1 (from a public script; CS re-checked)."""

READ = "68 10 12 00 00 00 00 00 00 01 03 90 1F 00 3D 16"
REPLY = (
    "68 10 12 00 00 00 00 00 00 81 16 90 1F 00 10 00 10 00 2C 10 00 10 00 2C"
    " 00 00 00 00 00 00 00 00 FF 67 16"
)
CLOSE_VALVE = "68 10 12 00 00 00 00 00 00 04 04 A0 17 00 99 E2 16"
