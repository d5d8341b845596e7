"""Faults for end-to-end tests, installed into a real daemon by ``[daemon] plugins = ["tests.faults"]``.

A mail whose subject says so misbehaves inside the pipeline (in the thread step, where any step could):

- ``[crash]``: the process dies at once (SIGKILL, as a segfault in a C library or the OOM killer would),
  every time the mail is processed: a poison pill.
- ``[wedge]``: the worker thread is stuck (up to two minutes) the first time the mail is processed,
  and passes the next time: a slow mail that a SIGTERM catches mid-pipeline.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

WEDGE_SECONDS = 120.0


def install(runtime: Any) -> None:
    marker = runtime.config.data_dir / "wedged-once"

    def misbehave(ctx: Any) -> None:
        subject = ctx.mail.subject or ""
        if "[crash]" in subject:
            os.kill(os.getpid(), signal.SIGKILL)
        if "[wedge]" in subject and not marker.exists():
            marker.write_text("wedged\n")
            deadline = time.monotonic() + WEDGE_SECONDS
            while time.monotonic() < deadline:
                time.sleep(0.1)
        return None

    runtime.services.thread_finders.insert(0, ("fault", misbehave))
