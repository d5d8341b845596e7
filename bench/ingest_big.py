"""Peak memory of the pipe door on a big mail: ``mailgate ingest`` as an MTA runs it.

Writes a mail of the given size to disk (a text part and a base64 attachment,
the shape of a big real mail), pipes it into ``mailgate ingest`` from this
process the way Postfix's pipe(8) does, and reports the child's peak RSS (the
``ru_maxrss`` that ``getrusage(RUSAGE_CHILDREN)`` would give for it, read per
child with ``os.wait4`` so that one row's child does not hide another's), its
CPU, the wall clock and the exit code. Rows:

* a small mail (processed at once: the fixed cost of the door with the pipeline);
* each ``--sizes`` mail with ``max_message_size`` raised to ``--limit`` (streamed
  to the spool and left to the daemon: memory must not grow with the size);
* the biggest mail against the default 25 MB limit (refused with 65 after
  reading 25 MB + 1 byte).

    .venv/bin/python bench/ingest_big.py --sizes 1,100,675 --limit 1GB
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from servers import ROOT, mailgate_config, sqlite_url

MB = 1024 * 1024


def write_mail(path: Path, size: int) -> None:
    """A multipart mail of ``size`` bytes, written in 1 MB steps (this process never holds it)."""
    head = (
        b"From: Alice <alice@customer.example>\r\nTo: support@example.com\r\nSubject: the whole archive\r\n"
        b"Message-ID: <big-" + str(size).encode() + b"@customer.example>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\n'
        b"Here it is.\r\n--b1\r\nContent-Type: application/octet-stream\r\n"
        b'Content-Disposition: attachment; filename="archive.bin"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
    )
    tail = b"\r\n--b1--\r\n"
    line = base64.encodebytes(os.urandom(57)).replace(b"\n", b"\r\n")  # 78 bytes
    block = line * (MB // len(line))
    with open(path, "wb") as out:
        out.write(head)
        left = size - len(head) - len(tail)
        while left > 0:
            piece = block[: min(len(block), left)]
            out.write(piece)
            left -= len(piece)
        out.write(tail)


def run_ingest(config: Path, mail: Path) -> dict[str, Any]:
    """Pipe ``mail`` into one ``mailgate ingest``; its exit code, peak RSS, CPU and wall clock."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailgate", "--config", str(config), "ingest"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stderr is not None
    fed = 0
    try:
        with open(mail, "rb") as source:
            while chunk := source.read(MB):
                proc.stdin.write(chunk)
                fed += len(chunk)
        proc.stdin.close()
    except BrokenPipeError:
        pass  # a refusal stops reading: that is the point
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "exit": proc.returncode,
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "wall_s": round(time.monotonic() - started, 2),
        "fed_mb": round(fed / MB, 1),
        "stderr": stderr.decode(errors="replace").strip()[:200],
    }


def configure(workdir: Path, limit: str) -> Path:
    config = mailgate_config(workdir, sqlite_url(workdir))
    config.write_text(config.read_text().replace('max_message_size = "25MB"', f'max_message_size = "{limit}"'))
    subprocess.run(
        [sys.executable, "-m", "mailgate", "--config", str(config), "db", "upgrade"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,100,675", help="mail sizes in MB, comma-separated")
    parser.add_argument("--limit", default="1GB", help="max_message_size for the big rows")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="mailgate-bench-ingest-big-"))
    rows: list[dict[str, Any]] = []
    try:
        raised = configure(workdir / "raised", args.limit)
        default = configure(workdir / "default", "25MB")
        small = workdir / "small.eml"
        write_mail(small, 4096)
        rows.append({"row": "4 KB mail, processed at once", **run_ingest(default, small)})
        for size in sizes:
            mail = workdir / f"{size}mb.eml"
            write_mail(mail, size * MB)
            row = run_ingest(raised, mail)
            rows.append({"row": f"{size} MB mail, limit {args.limit}", **row})
            if size == max(sizes):
                rows.append({"row": f"{size} MB mail, limit 25MB (refused)", **run_ingest(default, mail)})
            mail.unlink()
            for entry in (workdir / "raised" / "data" / "spool").rglob("*.eml"):
                entry.unlink()  # the daemon's work, not measured here
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{'row':42} {'exit':>4} {'peak RSS MB':>11} {'CPU s':>6} {'wall s':>7} {'fed MB':>7}")
    for row in rows:
        print(
            f"{row['row']:42} {row['exit']:>4} {row['peak_rss_mb']:>11} {row['cpu_s']:>6} {row['wall_s']:>7} "
            f"{row['fed_mb']:>7}"
        )
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
