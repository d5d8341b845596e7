"""One row, one winner: the conditional UPDATE every sweep and the sender claim work with.

Several daemons may run the same sweep on one database. Each claims a row by
an UPDATE whose WHERE repeats the condition that made the row due (``… AND
escalated_at IS NULL``); PostgreSQL makes the second writer wait for the
first to commit and then re-checks the WHERE, SQLite serialises writers, so
exactly one UPDATE changes the row and only its caller goes on.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, Update
from sqlalchemy.orm import Session


def won(session: Session, statement: Update) -> bool:
    """Run ``statement`` (a conditional UPDATE of one row); True when this caller changed it."""
    result = session.execute(statement.execution_options(synchronize_session=False))
    return cast(CursorResult[Any], result).rowcount == 1
