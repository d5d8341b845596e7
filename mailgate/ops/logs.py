"""One structured line per event, logfmt (default) or JSON.

Fields given with ``extra={...}`` become key=value pairs, so a grep for
``ticket=12`` or ``msgid=<…>`` finds every line about that mail.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}


def _fields(record: logging.LogRecord) -> dict[str, object]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}


_NEEDS_QUOTES = re.compile(r'[ ="\n\\]')


def _logfmt_value(value: object) -> str:
    text = str(value)
    if text == "" or _NEEDS_QUOTES.search(text):
        return json.dumps(text, ensure_ascii=False)
    return text


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        parts = [
            f"time={when}",
            f"level={record.levelname.lower()}",
            f"logger={record.name}",
            f"msg={_logfmt_value(record.getMessage())}",
        ]
        parts += [f"{k}={_logfmt_value(v)}" for k, v in _fields(record).items()]
        if record.exc_info:
            parts.append(f"exc={_logfmt_value(self.formatException(record.exc_info))}")
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        data.update(
            {k: v if isinstance(v, int | float | bool) or v is None else str(v) for k, v in _fields(record).items()}
        )
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


class NodeFilter(logging.Filter):
    """Puts ``node=`` on every line, so the logs of several daemons on one database can be merged."""

    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "node"):
            record.node = self.node
        return True


def setup(level: str = "info", fmt: str = "logfmt", node: str = "") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if node:
        handler.addFilter(NodeFilter(node))
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("mail.log", "alembic", "apscheduler", "aioimaplib"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
