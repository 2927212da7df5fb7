"""BENCHMARKS.md and BENCHMARKS.json from the scenario results."""

from __future__ import annotations

import json
import os
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

PACKAGES = ("esl-agent", "gevent", "greenlet", "grpcio", "wsproto", "google-cloud-speech",
            "google-cloud-texttospeech", "openai", "groq", "numpy", "soxr")


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "-"
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gb": round(mem_gb, 1),
            "python": platform.python_version(), "kernel": platform.release(),
            "load_avg_at_start": [round(x, 2) for x in os.getloadavg()], "packages": versions}


def stats(values: list[float | None]) -> dict[str, Any]:
    """min / median / p99 (linear interpolation) / max / n of the non-missing values."""
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return {"n": 0, "min": None, "median": None, "p99": None, "max": None}
    arr = np.array(xs)
    return {"n": len(xs), "min": round(float(arr.min()), 2), "median": round(float(np.median(arr)), 2),
            "p99": round(float(np.percentile(arr, 99)), 2), "max": round(float(arr.max()), 2)}


def column(rows: list[dict[str, Any]], key: str, **where: Any) -> list[Any]:
    return [r.get(key) for r in rows if all(r.get(k) == v for k, v in where.items())]


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """The figures with their statistics and targets (also what the JSON's `figures` holds)."""
    figures: dict[str, Any] = {}
    calls = (results.get("latency") or {}).get("calls", [])
    opt, base = {"variant": "optimised"}, {"variant": "baseline"}

    def fig(key: str, label: str, values: list[Any], target: float | None, unit: str = "ms") -> None:
        figures[key] = {"label": label, "unit": unit, "target": target, **stats(values)}

    fig("greeting_warm", "answer -> first greeting frame heard, warm greeting cache",
        column(calls, "answer_to_greeting_heard_ms", **opt), 20.0)
    fig("greeting_cold", "answer -> first greeting frame heard, cold cache (live TTS)",
        column(calls, "answer_to_greeting_heard_ms", **base), None)
    fig("greeting_cold_wire", "answer -> first greeting frame arrives at FreeSWITCH, cold cache",
        column(calls, "answer_to_greeting_frame_in_ms", **base), None)
    fig("overhead_llm", "final transcript -> first LLM request, minus the 300 ms end-of-turn wait",
        column(calls, "final_to_llm_overhead_ms"), 2.0)
    fig("overhead_llm_raw", "final transcript -> first LLM request (raw, includes end_of_turn_ms=300)",
        column(calls, "final_to_llm_request_ms"), None)
    fig("overhead_tts", "first complete sentence (LLM chunk sent) -> TTS request arrives",
        column(calls, "sentence_to_tts_request_ms", **opt), 2.0)
    fig("overhead_tts_text", "first complete sentence -> TTS text message arrives",
        column(calls, "sentence_to_tts_text_ms", **opt), None)
    fig("overhead_audio_out", "TTS first chunk sent -> first audio frame arrives at FreeSWITCH",
        column(calls, "tts_first_byte_to_frame_out_ms"), 2.0)
    streaming = column(calls, "final_to_reply_audio_frame_ms", **opt)
    whole = column(calls, "final_to_reply_audio_frame_ms", **base)
    fig("ttfa_streaming", "final transcript -> first reply audio frame, sentence streaming", streaming, None)
    fig("ttfa_whole", "final transcript -> first reply audio frame, whole-reply TTS (baseline)", whole, None)
    fig("ttfa_any_whole", "final transcript -> first audio of any kind (the filler), whole reply",
        column(calls, "final_to_first_audio_frame_ms", **base), None)
    s_med, w_med = figures["ttfa_streaming"]["median"], figures["ttfa_whole"]["median"]
    figures["ttfa_ratio"] = {"label": "time to first audio, streaming / whole reply (medians)", "unit": "",
                             "target": 0.5, "value": round(s_med / w_med, 3) if s_med and w_med else None}
    fig("bargein_kill", "interim transcript -> killAudio at FreeSWITCH (playback stopped)",
        column(calls, "interim_to_kill_audio_ms"), 5.0)
    fig("bargein_break", "interim transcript -> uuid_break at FreeSWITCH",
        column(calls, "interim_to_uuid_break_ms"), 5.0)
    fig("bargein_llm", "interim transcript -> old turn's LLM stream closed at the server",
        column(calls, "interim_to_llm_cancelled_ms"), 5.0)
    fig("bargein_tts", "interim transcript -> old turn's TTS streams cancelled at the server",
        column(calls, "interim_to_tts_cancelled_ms"), 5.0)
    scale = results.get("scale") or {}
    passing = [s for s in scale.get("steps", []) if s.get("jitter_p99_ms") is not None
               and s["jitter_p99_ms"] <= 10.0 and s.get("forks_up") == s.get("calls")]
    best = max(passing, key=lambda s: s["calls"]) if passing else None
    figures["scale"] = {"label": "largest N with outgoing frame jitter p99 <= 10 ms", "target": 500,
                        "value": best["calls"] if best else None,
                        "ceiling_reached": bool(scale.get("steps")) and best is not None
                        and best is scale["steps"][-1],
                        "cpu_pct_per_call": best["cpu_pct_per_call"] if best else None,
                        "rss_mb_per_call": best["rss_mb_per_call"] if best else None,
                        "rss_target_mb": 2.0}
    return figures


def write(out: Path, results: dict[str, Any]) -> None:
    results["figures"] = summarise(results)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    out.write_text(markdown(results))


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2f}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def markdown(results: dict[str, Any]) -> str:
    meta = results.get("meta", {})
    m = meta.get("machine", {})
    figs = results["figures"]
    lines = ["# esl-agent benchmarks", ""]
    lines += [f"Generated by `python -m benchmarks{' --quick' if meta.get('mode') == 'quick' else ''}` "
              f"on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(meta.get('started', time.time())))}, "
              f"mode **{meta.get('mode')}**, {meta.get('duration_s')} s. Raw data: `{Path('BENCHMARKS.json')}`.", ""]
    lines += ["## Machine", "",
              f"- CPU: {m.get('cpu')} ({m.get('cores')} cores), RAM {m.get('ram_gb')} GB, "
              f"Linux {m.get('kernel')}, Python {m.get('python')}",
              f"- load average at start: {m.get('load_avg_at_start')} (the machine is shared)",
              "- packages: " + ", ".join(f"{k} {v}" for k, v in (m.get("packages") or {}).items()), ""]
    lines += ["## Settings", "",
              "Three processes: the controller under test (`benchmarks/controller.py`, production "
              "`build_agent` wiring with Google STT/TTS and an OpenAI -> Groq failover chain), the load "
              "process (`benchmarks/loadgen.py`: FreeSWITCH simulator + loopback Google gRPC and "
              "OpenAI-compatible SSE servers) and the orchestrator. Times come from the simulator's "
              "recorder and the loopback servers (CLOCK_MONOTONIC, shared by the processes).", "",
              "Fixed loopback latencies: " + ", ".join(f"{k} = {v}" for k, v in meta.get("latencies", {}).items()),
              "", f"Plan: `{json.dumps(meta.get('plan'))}`", ""]
    lines += ["## Figures", "", "| figure | n | min | median | p99 | max | target |", "|---|---|---|---|---|---|---|"]
    for key, f in figs.items():
        if key in ("ttfa_ratio", "scale"):
            continue
        target = f"<= {f['target']} ms" if f.get("target") is not None else ""
        lines.append(f"| {f['label']} | {f['n']} | {_fmt(f['min'])} | {_fmt(f['median'])} | "
                     f"{_fmt(f['p99'])} | {_fmt(f['max'])} | {target} |")
    ratio = figs["ttfa_ratio"]
    lines += ["", f"**Sentence streaming vs whole-reply TTS** (same run, alternating calls): time to first "
              f"audio ratio = **{_fmt(ratio['value'])}** (target <= 0.5).", ""]
    lines += _scale_md(results, figs["scale"])
    lines += _drills_md(results)
    lines += _profile_md(results)
    return "\n".join(lines) + "\n"


def _scale_md(results: dict[str, Any], fig: dict[str, Any]) -> list[str]:
    scale = results.get("scale")
    if not scale:
        return []
    out = ["## Scale", "",
           f"Largest N with outgoing frame jitter p99 <= 10 ms: **{_fmt(fig['value'])}** (target >= 500); "
           f"CPU per call {_fmt(fig['cpu_pct_per_call'])} % of a core, RSS per call "
           f"{_fmt(fig['rss_mb_per_call'])} MB (target <= 2 MB). Idle controller RSS "
           f"{_fmt(results.get('controller_idle_rss_mb'))} MB.", "",
           "| calls | forks up | controller CPU % | CPU %/call | RSS MB | RSS MB/call | jitter p50 | jitter p99 | "
           "jitter max | transit p50 | transit p99 | replies | loadgen CPU % | loadgen tick late p99 | "
           "controller loop lag p99 / max |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in scale.get("steps", []):
        out.append("| " + " | ".join(_fmt(s.get(k)) for k in (
            "calls", "forks_up", "controller_cpu_pct", "cpu_pct_per_call", "rss_mb", "rss_mb_per_call",
            "jitter_p50_ms", "jitter_p99_ms", "jitter_max_ms", "transit_p50_ms", "transit_p99_ms",
            "replies_in_window", "loadgen_cpu_pct", "loadgen_tick_late_p99_ms"))
                   + f" | {_fmt((s.get('controller_loop_lag') or {}).get('p99_ms'))} / "
                   f"{_fmt((s.get('controller_loop_lag') or {}).get('max_ms'))} |")
    return [*out, ""]


def _drills_md(results: dict[str, Any]) -> list[str]:
    out = ["## Fault drills", ""]
    drills = results.get("drills") or {}
    for name, d in drills.items():
        if name == "wall_s":
            continue
        out.append(f"- **{name}**: " + ", ".join(f"{k} = {_fmt(v)}" for k, v in d.items()))
    burst = results.get("burst")
    if burst:
        rows = burst.get("calls", [])
        out.append(f"- **burst**: {len(rows)} calls placed in {burst.get('arrival_s')} s, "
                   f"{burst.get('finished')} finished; connect->answer {stats(column(rows, 'connect_to_answer_ms'))}; "
                   f"answer->greeting {stats(column(rows, 'answer_to_greeting_heard_ms'))}; "
                   f"silence after question {stats(column(rows, 'silence_after_question_ms'))}")
    soak = results.get("soak")
    if soak:
        out.append(f"- **soak**: {soak.get('duration_s')} s, {soak.get('calls')} calls, ended by "
                   f"{soak.get('ended_by')}, controller RSS samples (s, MB): {soak.get('samples')}")
    restart = results.get("restart")
    if restart:
        out.append(f"- **controller restart**: {json.dumps(restart)}")
    return [*out, ""]


def _profile_md(results: dict[str, Any]) -> list[str]:
    scale = results.get("scale") or {}
    prof = scale.get("profile") or {}
    if not prof:
        return []
    if "error" in prof:
        return ["## Profile of the per-frame path", "", prof["error"], ""]
    step = scale.get("profiled_step") or {}
    out = ["## Profile of the per-frame path", "",
           f"py-spy (250 Hz, from outside the process) over a scale step with {step.get('calls')} calls "
           f"(controller CPU {_fmt(step.get('controller_cpu_pct'))} % of a core in its window): "
           f"{prof['samples']} samples, {prof['busy_samples']} busy (not waiting in the hub). "
           "% = share of the busy samples with the function on the stack (cumulative) or innermost (own).",
           "", "Per-frame path (cumulative):", "", "| function | samples | % of busy |", "|---|---|---|"]
    for where, n, pct in prof.get("per_frame_path", []):
        out.append(f"| `{where}` | {n} | {pct} |")
    out += ["", "Top entries by own time (whole controller):", "", "| function | samples | % of busy |",
            "|---|---|---|"]
    for where, n, pct in prof.get("top_own", []):
        out.append(f"| `{where}` | {n} | {pct} |")
    out += ["", "Top entries by cumulative time:", "", "| function | samples | % of busy |", "|---|---|---|"]
    for where, n, pct in prof.get("top_cumulative", [])[:30]:
        out.append(f"| `{where}` | {n} | {pct} |")
    blocking = scale.get("blocking") or {}
    if blocking.get("runs"):
        out += ["", f"Greenlet runs that kept the hub busy for >= {blocking['threshold_ms']:.0f} ms "
                f"(greenlet.settrace in the controller, same step): {blocking['slow_runs']} of "
                f"{blocking['runs']} runs.", "", "| runs | longest ms | total ms | where it yielded |",
                "|---|---|---|---|"]
        for count, longest, total, where in blocking.get("by_place", []):
            out.append(f"| {count} | {longest} | {total} | `{where or '?'}` |")
    return [*out, ""]
