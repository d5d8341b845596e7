"""One directory fsync for a burst of renames: the spool's group commit of its folder.

A 250 may only follow the fsync of ``incoming/`` after the entry's rename;
many sessions renaming at once share one fsync instead of one each.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from mailgate.fsutil import fsync_dir


class DirSync:
    """fsync of one directory, shared by every thread that needs it at the same moment.

    A caller asks after its rename; it returns once an fsync that *started
    after* its request has finished. Whoever finds no fsync running does one
    for everybody who asked so far; the others wait for it. So the guarantee
    per caller is the same as its own fsync, and the cost is one fsync per
    burst instead of one per message.
    """

    def __init__(self, path: Path, fsync: Callable[[Path], None] = fsync_dir) -> None:
        self.path = path
        self.fsync = fsync
        self.done = 0  # fsyncs made
        self._cond = threading.Condition()
        self._asked = 0
        self._covered = 0
        self._running = False

    def sync(self) -> None:
        with self._cond:
            self._asked += 1
            ticket = self._asked
            while self._covered < ticket:
                if self._running:
                    self._cond.wait()
                    continue
                self._running, target = True, self._asked
                self._cond.release()
                try:
                    self.fsync(self.path)
                finally:
                    self._cond.acquire()
                    self._running = False
                    self._cond.notify_all()
                self.done += 1
                self._covered = max(self._covered, target)
