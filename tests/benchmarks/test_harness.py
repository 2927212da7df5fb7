"""The benchmark harness runs end to end (quick mode, tiny N) and fills every section with numbers.

No thresholds here: the figures are measured by `make bench`; this only proves the harness works.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.wire, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_quick_mode_produces_every_section(tmp_path: Path) -> None:
    out = tmp_path / "BENCH.md"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out), "--latency-calls", "1",
         "--burst-calls", "10", "--scale-steps", "4", "--soak-seconds", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    data = json.loads(out.with_suffix(".json").read_text())
    figures = data["figures"]
    for key in ("greeting_warm", "greeting_cold", "overhead_llm", "overhead_tts", "overhead_audio_out",
                "ttfa_streaming", "ttfa_whole", "bargein_kill", "bargein_llm"):
        assert figures[key]["n"] >= 1 and figures[key]["median"] is not None, (key, figures[key])
    assert figures["ttfa_ratio"]["value"] is not None
    for drill in ("control", "stt_cut", "llm_timeout", "tts_failing", "fork_drop"):
        assert data["drills"][drill].get("silence_after_question_ms") is not None, (drill, data["drills"][drill])
    assert data["drills"]["stt_cut"]["stream_cut"] is True
    assert data["drills"]["llm_timeout"]["failover_after_ms"] is not None
    assert data["burst"]["finished"] == 10
    step = data["scale"]["steps"][0]
    assert step["forks_up"] == 4 and step["frames_out_measured"] > 0 and step["controller_cpu_pct"] > 0
    assert len(data["soak"]["samples"]) >= 1
    assert data["restart"]["recovered"]["new_call_greeted"] is True
    assert all(c["socket_app_returned_after_kill_ms"] is not None for c in data["restart"]["observed"]["calls"])
    text = out.read_text()
    for heading in ("## Machine", "## Settings", "## Summary against the targets", "## 1. Answer",
                    "## 2. Controller overhead", "## 3. Sentence streaming", "## 4. Barge-in", "## 5. Scale",
                    "## Fault drills", "## Findings"):
        assert heading in text, heading
