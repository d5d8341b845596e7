"""The language model is unpacked once into ``[mailgate] cache_dir`` and then mapped from it.

Each check runs in a fresh interpreter: the model is loaded once per process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SAMPLES = {
    "fr": "Bonjour, mon imprimante ne fonctionne plus depuis hier soir, pouvez-vous m'aider ?",
    "de": "Guten Tag, mein Drucker funktioniert seit gestern Abend nicht mehr, können Sie mir helfen?",
    "en": "Hello, my printer stopped working last night, could you help me please?",
}

PROBE = """
import json, sys, time
from pathlib import Path
from mailgate.mail import language
started = time.process_time()
language.load(Path(sys.argv[1]) if sys.argv[1] else None)
seconds = time.process_time() - started
table = language._identifier().tk_nextmove
print(json.dumps({
    "detected": {k: language.detect(v) for k, v in json.loads(sys.argv[2]).items()},
    "mapped": isinstance(table, memoryview),
    # VmHWM starts afresh in a new program (ru_maxrss would carry the parent's over the exec)
    "peak_mb": next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) // 1024,
}))
"""


def probe(cache: Path | None, peak: bool = False) -> dict[str, object]:
    """What a fresh process answers (its peak RSS in MB too, with ``peak``)."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(cache or ""), json.dumps(SAMPLES)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout)
    if not peak:
        result.pop("peak_mb")
    return result


def test_the_first_process_has_the_model_unpacked_apart_and_maps_it_as_the_next_does(tmp_path):
    cache = tmp_path / "cache"
    first = probe(cache)
    assert first == {"detected": {"fr": "fr", "de": "de", "en": "en"}, "mapped": True}
    (unpacked,) = cache.iterdir()
    assert unpacked.name.startswith("langid-") and (unpacked / "ptc.npy").is_file()
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no half-written folder left
    assert probe(cache) == {"detected": first["detected"], "mapped": True}


def test_a_damaged_unpacked_copy_is_not_used_and_the_shipped_model_still_answers(tmp_path):
    cache = tmp_path / "cache"
    probe(cache)
    (unpacked,) = cache.iterdir()
    (unpacked / "row.bin").unlink()
    assert probe(cache) == {"detected": {"fr": "fr", "de": "de", "en": "en"}, "mapped": False}


def test_a_cache_folder_that_cannot_be_written_costs_only_the_unpacking(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    assert probe(blocked / "cache") == {"detected": {"fr": "fr", "de": "de", "en": "en"}, "mapped": False}
    assert probe(None)["mapped"] is False


def test_the_cache_folder_defaults_to_the_data_directory_and_can_be_moved(tmp_path):
    from mailgate.config import parse_config

    path = tmp_path / "config.toml"
    assert parse_config({}, path).cache_path == tmp_path / "storage" / "cache"
    moved = parse_config({"mailgate": {"cache_dir": "/var/cache/mailgate"}}, path)
    assert moved.cache_path == Path("/var/cache/mailgate")


def test_unpacking_apart_keeps_the_decompressed_model_out_of_the_process_for_good(tmp_path):
    apart = probe(tmp_path / "cache", peak=True)
    here = probe(None, peak=True)  # no cache folder: unpacked in the process itself
    assert apart["mapped"] is True and here["mapped"] is False
    assert int(here["peak_mb"]) - int(apart["peak_mb"]) > 50, (apart, here)
