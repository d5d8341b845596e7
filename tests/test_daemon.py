"""The daemon's own process: what it sets for itself before it serves."""

from __future__ import annotations

import asyncio
import sys

import pytest

from mailgate import daemon


def test_the_door_waits_at_most_half_a_millisecond_for_the_interpreter():
    before = sys.getswitchinterval()
    try:
        daemon.share_the_interpreter()
        assert sys.getswitchinterval() == pytest.approx(0.0005)
    finally:
        sys.setswitchinterval(before)


def test_serve_shares_the_interpreter_before_anything_else(harness, monkeypatch):
    class Called(Exception):
        pass

    def share() -> None:
        raise Called

    monkeypatch.setattr(daemon, "share_the_interpreter", share)
    with pytest.raises(Called):
        asyncio.run(daemon.serve(harness.runtime))
