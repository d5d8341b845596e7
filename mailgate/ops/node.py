"""This machine's name among the daemons sharing one database.

``[mailgate] node`` (default: the host name) appears on every log line, as
the ``node`` label of ``mailgate_node_info`` in the metrics and on
``/healthz``, so an admin running several daemons knows which one spoke.
Each node's spool is its own: mail it accepted is processed by its workers.
"""

from __future__ import annotations

import socket

from mailgate.config import Config


def node_name(config: Config) -> str:
    value = config.raw.get("mailgate", {}).get("node", "")
    return str(value) if value else socket.gethostname()
