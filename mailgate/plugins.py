"""The plugin list: which modules extend the pipeline, in the order they are installed.

Only names, so that any layer may read the list (the outbound plugin imports
every module in it to learn their kinds of mail) without importing the wiring.
"""

from __future__ import annotations

# Functions that add what their module needs to a fresh Runtime (reactors, thread
# finders, rule sets …): ``install(runtime) -> None``. Each module that extends the
# pipeline lists itself here, so every door (serve, ingest, tests) gets the same pipeline.
PLUGINS: tuple[str, ...] = (
    "mailgate.ops.scheduler",
    "mailgate.outbound.plugin",
    "mailgate.pipeline.steps.agents",
    "mailgate.routing.plugin",
    "mailgate.doors.imap",
    "mailgate.timers.sweeps",
    "mailgate.ops.metrics",
)
