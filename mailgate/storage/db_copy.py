"""``mailgate db copy --to URL``: move a whole installation to an empty PostgreSQL database.

In order: refuse a target that holds any table (a copy never merges into
someone's data); bring the target's schema to head with the migrations; copy
every table of the models in foreign-key order, in batches, through the
models' own types (aware UTC times, JSON, booleans come out as they went in);
a ticket's links to other tickets (``follows_id``, ``merged_into_id``) are
set in a second pass, because a ticket may point at a newer one. Then the
blobs are copied into the target's backend (``database``: chunked rows;
``files``: the directory this machine already has), the ``id`` sequences are
set past the highest copied id and the ticket numbering (the ``counters``
row, and on PostgreSQL the ``ticket_numbers`` sequence) continues after the
highest number the source gave, so new tickets continue it. The ``installation`` row carries the
signing key: addresses signed before the move stay proven after it.

Last, a verification: the row count and a checksum of every table's rows,
read back from both databases through the same types, must agree, and every
referenced blob must hash to its name in the target. The source is not
changed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, Table, func, select, text, update

from mailgate.storage import db
from mailgate.storage.blobstore import Blobs
from mailgate.storage.migrate import Report, copy_blobs, progress, referenced, verify
from mailgate.storage.models import Base

BATCH = 500
BLOB_TABLES = ("blobs", "blob_chunks")  # copied through the blob stores, whatever backend either side has


class TargetNotEmpty(Exception):
    """The target database already holds tables: a copy would mix two installations."""


@dataclass
class CopyReport:
    rows: dict[str, int] = field(default_factory=dict)
    mismatched: list[str] = field(default_factory=list)  # tables whose count or checksum differ
    blobs: Report = field(default_factory=Report)

    @property
    def ok(self) -> bool:
        return not self.mismatched and self.blobs.ok


def tables() -> list[Table]:
    """The tables to copy row by row, parents first."""
    return [t for t in Base.metadata.sorted_tables if t.name not in BLOB_TABLES]


def _self_links(table: Table) -> list[str]:
    return [fk.parent.name for fk in table.foreign_keys if fk.column.table is table]


def _rows(engine: Engine, table: Table) -> Iterator[list[dict[str, Any]]]:
    query = select(table).order_by(*table.primary_key.columns)
    with engine.connect() as conn:
        result = conn.execution_options(yield_per=BATCH).execute(query)
        for part in result.mappings().partitions(BATCH):
            yield [dict(row) for row in part]


def copy_table(source: Engine, target: Engine, table: Table) -> int:
    """Copy every row of ``table``; links to rows of the same table are set after all rows are in."""
    links = _self_links(table)
    pk = list(table.primary_key.columns)
    count, total = 0, _count(source, table)
    with progress(total=total, desc=table.name, unit="row") as bar:
        for batch in _rows(source, table):
            with target.begin() as conn:
                conn.execute(table.insert(), [{**row, **dict.fromkeys(links)} for row in batch])
                linked = [row for row in batch if any(row[name] is not None for name in links)]
                for row in linked:
                    conn.execute(
                        update(table).where(*(c == row[c.name] for c in pk)).values({name: row[name] for name in links})
                    )
            count += len(batch)
            bar.update(len(batch))
    return count


def _count(engine: Engine, table: Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def checksum(engine: Engine, table: Table) -> tuple[int, str]:
    """(rows, sha256 of every row in key order), values read through the models' types."""
    digest, count = hashlib.sha256(), 0
    for batch in _rows(engine, table):
        for row in batch:
            digest.update(json.dumps(row, sort_keys=True, default=_canonical).encode())
            count += 1
    return count, digest.hexdigest()


def _canonical(value: Any) -> str:
    if isinstance(value, bytes | memoryview):
        return hashlib.sha256(bytes(value)).hexdigest()
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return repr(value)


def set_sequences(target: Engine) -> None:
    """Each serial ``id``, and the ticket numbers, continue after the highest copied one.

    PostgreSQL keeps sequences apart from rows. A number a PostgreSQL source took and rolled back is
    above its highest ticket and may be given again by the target: no ticket ever had it.
    """
    with target.begin() as conn:
        for table in tables():
            pk = list(table.primary_key.columns)
            if len(pk) != 1 or pk[0].name != "id":
                continue
            conn.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                    f"coalesce((SELECT max(id) FROM {table.name}), 0) + 1, false)"
                )
            )
        # the source's counter, or on a PostgreSQL source its sequence (the counter row is not kept there)
        conn.execute(
            text(
                "SELECT setval('ticket_numbers', greatest(coalesce((SELECT value FROM counters WHERE name = 'ticket'),"
                " 0), coalesce((SELECT max(number) FROM tickets), 0)) + 1, false)"
            )
        )


def copy_installation(source: Engine, target: Engine, source_blobs: Blobs, target_blobs: Blobs) -> CopyReport:
    """The whole copy (see the module docstring). Raises TargetNotEmpty before writing anything."""
    if not db.is_empty(target):
        raise TargetNotEmpty("the target database already holds tables; db copy only fills an empty one")
    db.ensure_schema(source)
    db.upgrade(target)
    report = CopyReport()
    with target.begin() as conn:  # rows the migrations seeded (the ticket counter): the source's replace them
        for table in reversed(tables()):
            conn.execute(table.delete())
    for table in tables():
        report.rows[table.name] = copy_table(source, target, table)
    if target.dialect.name == "postgresql":
        set_sequences(target)
    if source_blobs is not target_blobs:
        report.blobs = copy_blobs(source_blobs, target_blobs, label="blobs")
    for table in tables():
        if checksum(source, table) != checksum(target, table):
            report.mismatched.append(table.name)
    verify(target_blobs, list(referenced(target)), report.blobs)
    return report
