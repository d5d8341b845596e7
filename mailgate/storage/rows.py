"""When a row can be written with one Core INSERT instead of waiting for the unit of work.

The ORM's flush costs far more than the INSERT it emits (it sorts, diffs and
cascades every object in the session). Rows that nothing reads back in the
same transaction (events, the Message-ID index) are written at once when the
rows they name already exist; these two checks say when that is.
"""

from __future__ import annotations

from typing import Literal, cast

from sqlalchemy import Table, inspect
from sqlalchemy.orm import Session

from mailgate.storage.models import Base


def flushed_id(obj: Base | None) -> int | Literal[False] | None:
    """The primary key of a row already written, None for no object, False for one not flushed yet.

    Read from the identity key, so an expired object is not loaded again.
    """
    if obj is None:
        return None
    identity = inspect(obj).identity
    return False if identity is None else int(identity[0])


def nothing_pending(session: Session) -> bool:
    """No new object waits for a flush: a row written now cannot come before one recorded earlier."""
    return not session.new


def table(model: type[Base]) -> Table:
    """The model's table, typed as a Table for Core statements."""
    return cast(Table, model.__table__)
