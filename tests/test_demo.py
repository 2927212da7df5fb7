"""`make demo` (short form) runs in CI: a whole offline call, checked by what it printed."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow, pytest.mark.wire]


def test_make_demo_short(tmp_path: Path) -> None:
    # The Makefile target itself, as a newcomer runs it (the venv already exists in CI: make test made it).
    proc = subprocess.run(["make", "-s", "demo-short", f"OUT={tmp_path}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, check=False)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "demo: OK" in out
    latency = re.search(r"greeting latency\s+(\d+) ms after answer \(pre-rendered file\)", out)
    assert latency, out
    # Whisper's exact words vary a little run to run; the request itself must be recognised.
    assert re.search(r'caller said\s+"[^"]*through to An', out), out
    assert "transfer_call" in out
    assert re.search(r"transferred\s+[\d.]+ s to \+4312345678", out), out
    wavs = list(tmp_path.glob("*.wav"))
    assert len(wavs) == 1 and wavs[0].stat().st_size > 8000 * 2 * 3
    timeline = json.loads(wavs[0].with_suffix(".json").read_text())
    assert timeline["first_audio_time"] is not None
