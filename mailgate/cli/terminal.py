"""Mail text made safe to print on an admin's terminal.

A mail is written by strangers: its subject, sender name or body may hold
escape sequences (``ESC ] 0 ;`` retitles the window, OSC 52 writes the
clipboard, ``ESC [ 2 J`` wipes the screen), a CR that overwrites the line,
or C1 controls that some terminals obey as ESC sequences. Every command that
prints mail content as text passes it through :func:`for_terminal`, which
shows each such character as a visible ``\\xNN`` instead. TAB and LF stay as
they are, so text keeps its layout; JSON output does not use this (it escapes
control characters itself and must keep the original text).
"""

from __future__ import annotations

import re

# C0 controls except TAB (0x09) and LF (0x0a), DEL, and the C1 range U+0080-U+009F.
# ESC (0x1b) is among them, so no escape sequence survives: its introducer is shown, not sent.
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def for_terminal(text: str) -> str:
    """``text`` with every control character a terminal would act on shown as ``\\xNN``."""
    return _UNSAFE.sub(lambda match: f"\\x{ord(match.group()):02x}", text)
