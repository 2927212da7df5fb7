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
    steps = [st for st in scale.get("steps", []) if st.get("forks_up") == st.get("calls")]
    passing = [st for st in steps if st.get("jitter_p99_ms") is not None and st["jitter_p99_ms"] <= 10.0]
    best = max(passing, key=lambda st: st["calls"]) if passing else None
    largest = max(steps, key=lambda st: st["calls"]) if steps else None
    figures["scale"] = {"label": "largest N with outgoing frame jitter p99 <= 10 ms", "target": 500,
                        "value": best["calls"] if best else None,
                        "first_step": steps[0] if steps else None,
                        "largest_step": largest,
                        "cpu_pct_per_call": (largest or {}).get("cpu_pct_per_call"),
                        "rss_mb_per_call": (largest or {}).get("rss_mb_per_call"),
                        "rss_target_mb": 2.0}
    for name, exp in (results.get("experiments") or {}).items():
        ok = [st for st in exp.get("steps", []) if st.get("forks_up") == st.get("calls")
              and st.get("jitter_p99_ms") is not None and st["jitter_p99_ms"] <= 10.0]
        figures["scale"][f"value_with_{name}"] = max((st["calls"] for st in ok), default=None)
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
              f"mode **{meta.get('mode')}**, {meta.get('duration_s')} s. Raw data: `BENCHMARKS.json` "
              "(every per-call measurement).", ""]
    lines += ["## Machine", "",
              f"- CPU: {m.get('cpu')} ({m.get('cores')} cores), RAM {m.get('ram_gb')} GB, "
              f"Linux {m.get('kernel')}, Python {m.get('python')}",
              f"- load average at start: {m.get('load_avg_at_start')} (the machine is shared with other "
              "work: the tails include its noise)",
              "- packages: " + ", ".join(f"{k} {v}" for k, v in (m.get("packages") or {}).items()),
              *_git_md(meta.get("git")), ""]
    lines += ["## Settings", "",
              "- Three processes: the **controller under test** (`benchmarks/controller.py`: the production "
              "`build_agent` wiring with Google STT/TTS over gRPC and an OpenAI -> Groq failover chain over "
              "SSE), the **load process** (`benchmarks/loadgen.py`: the FreeSWITCH simulator plus loopback "
              "Google gRPC and OpenAI-compatible SSE servers) and this orchestrator. The simulator never "
              "shares the controller's CPU.",
              "- Every time is read off the wire: the simulator's recorder (commands, events, WebSocket "
              "frames, heard audio at the 20 ms media clock) and the loopback servers (request arrival, "
              "chunk send, cancel). CLOCK_MONOTONIC is common to the processes.",
              "- Fixed loopback latencies (so the figures isolate what the controller adds): "
              + ", ".join(f"{k} = {v}" for k, v in meta.get("latencies", {}).items()) + ".",
              "- Calls alternate between two destination numbers in the same controller: **optimised** "
              "(sentence streaming + greeting cache, the product defaults) and **baseline** (the seed: "
              "whole-reply TTS, live TTS greeting).",
              f"- Plan: `{json.dumps(meta.get('plan'))}`", ""]
    lines += _summary_md(figs)
    lines += _figures_md(results, figs)
    lines += _scale_md(results, figs["scale"])
    lines += _drills_md(results)
    lines += _profile_md(results)
    lines += _findings_md(results)
    return "\n".join(lines) + "\n"


def _git_md(git: dict[str, Any] | None) -> list[str]:
    if not git:
        return []
    if git.get("note"):
        return [f"- code: commit {git.get('head')}; {git['note']}"]
    changed = git.get("uncommitted_in_esl_agent") or []
    note = (f"; the shared working tree also had uncommitted changes in {len(changed)} product file(s) "
            f"({', '.join(changed[:8])}{', ...' if len(changed) > 8 else ''}), which is what ran") if changed else ""
    return [f"- code: commit {git.get('head')}{note}"]


def _verdict(value: float | None, target: float | None, lower_is_better: bool = True) -> str:
    if value is None or target is None:
        return ""
    ok = value <= target if lower_is_better else value >= target
    return "met" if ok else "**missed**"


def _summary_md(figs: dict[str, Any]) -> list[str]:
    out = ["## Summary against the targets", "", "| figure | measured | target | |", "|---|---|---|---|"]
    for key, label in (("greeting_warm", "1. answer -> greeting heard, warm cache (p99)"),
                       ("overhead_llm", "2a. final transcript -> LLM request, overhead (p99)"),
                       ("overhead_tts", "2b. first sentence -> TTS request (p99)"),
                       ("overhead_audio_out", "2c. TTS first byte -> audio frame out (p99)"),
                       ("bargein_kill", "4a. interim -> killAudio (p99)"),
                       ("bargein_llm", "4b. interim -> LLM stream cancelled (p99)"),
                       ("bargein_tts", "4c. interim -> TTS streams cancelled (p99)")):
        f = figs[key]
        out.append(f"| {label} | {_fmt(f['p99'])} ms (median {_fmt(f['median'])}, n={f['n']}) | "
                   f"<= {f['target']} ms | {_verdict(f['p99'], f['target'])} |")
    ratio = figs["ttfa_ratio"]
    out.append(f"| 3. time to first audio, streaming / whole reply | {_fmt(ratio['value'])} | <= 0.5 | "
               f"{_verdict(ratio['value'], 0.5)} |")
    sc = figs["scale"]
    first, largest = sc.get("first_step") or {}, sc.get("largest_step") or {}
    value = sc["value"]
    shown = (_fmt(value) if value is not None else
             f"none: already {_fmt(first.get('jitter_p99_ms'))} ms at {first.get('calls')} calls")
    extra = "; ".join(f"with {k[len('value_with_'):]}: {_fmt(v)}" for k, v in sc.items()
                      if k.startswith("value_with_"))
    out.append(f"| 5. calls with outgoing jitter p99 <= 10 ms | {shown}{' (' + extra + ')' if extra else ''} | "
               f">= 500 | **missed** |" if (value or 0) < 500 else f"| 5. calls with jitter p99 <= 10 ms | "
               f"{value} | >= 500 | met |")
    out.append(f"| 5. RSS per call (at {largest.get('calls')} calls) | {_fmt(sc['rss_mb_per_call'])} MB | "
               f"<= 2 MB | {_verdict(sc['rss_mb_per_call'], 2.0)} |")
    out.append(f"| 5. CPU per call (at {largest.get('calls')} calls) | {_fmt(sc['cpu_pct_per_call'])} % of a "
               f"core (~{_per_core(sc['cpu_pct_per_call'])} calls per "
               "core) | - | |")
    return [*out, ""]


def _per_core(cpu_pct_per_call: float | None) -> str:
    return f"{100 / cpu_pct_per_call:.0f}" if cpu_pct_per_call else "-"


def _row(f: dict[str, Any]) -> str:
    target = f"<= {f['target']} ms" if f.get("target") is not None else ""
    return (f"| {f['label']} | {f['n']} | {_fmt(f['min'])} | {_fmt(f['median'])} | {_fmt(f['p99'])} | "
            f"{_fmt(f['max'])} | {target} |")


def _table(figs: dict[str, Any], keys: list[str]) -> list[str]:
    out = ["| figure (ms) | n | min | median | p99 | max | target |", "|---|---|---|---|---|---|---|"]
    return out + [_row(figs[k]) for k in keys if k in figs]


def _legs(title: str, legs: dict[str, Any]) -> list[str]:
    out = [title, "", "| leg (ms) | n | min | median | p99 | max |", "|---|---|---|---|---|---|"]
    for name, st in legs.items():
        out.append(f"| {name} | {st['n']} | {_fmt(st['min'])} | {_fmt(st['median'])} | {_fmt(st['p99'])} | "
                   f"{_fmt(st['max'])} |")
    return out


def _figures_md(results: dict[str, Any], figs: dict[str, Any]) -> list[str]:
    latency = results.get("latency") or {}
    calls = latency.get("calls", [])
    out = ["## 1. Answer -> first greeting frame", ""]
    out += _table(figs, ["greeting_warm", "greeting_cold", "greeting_cold_wire"])
    queued = stats(column(calls, "greeting_queued_vs_answer_ms", variant="optimised"))
    started = stats(column(calls, "answer_to_playback_start_ms", variant="optimised"))
    out += ["", "Where the warm-cache time goes: the controller queues the greeting's `playback` right behind "
            f"`answer` (median {_fmt(queued['median'])} ms relative to the answer; negative = before it ran), "
            "so its own share is nil. FreeSWITCH (the simulator, fixtures fact 5) starts a queued application "
            f"~20 ms after the previous one (PLAYBACK_START median {_fmt(started['median'])} ms after the "
            "answer), and the first frame goes out on the next 20 ms media tick (0-20 ms later). That floor "
            "is FreeSWITCH's; the cold path pays the TTS first byte instead.", ""]
    out += ["## 2. Controller overhead on the voice-to-voice path", ""]
    out += _table(figs, ["overhead_llm", "overhead_llm_raw", "overhead_tts", "overhead_tts_text",
                         "overhead_audio_out"])
    if latency.get("turn_split"):
        out += ["", *_legs("Final transcript -> LLM request, split by probes inside the controller process "
                           "(harness instrumentation, first turn of each call):", latency["turn_split"])]
    out += ["", "## 3. Sentence streaming vs whole-reply TTS", ""]
    out += _table(figs, ["ttfa_streaming", "ttfa_whole", "ttfa_any_whole"])
    ratio = figs["ttfa_ratio"]
    out += ["", f"Ratio of the medians, same run: **{_fmt(ratio['value'])}** (target <= 0.5). It depends on the "
            "reply and the model: the first reply has three sentences (28 words, the first one 12) and the "
            "loopback model streams ~33 words/s after a 300 ms first token, so whole-reply TTS starts ~0.6 s "
            "later. A longer reply or a slower model gives a smaller ratio, a faster model a larger one. The "
            "baseline caller hears the filler first (its own row); the filler is a different trick, so the "
            "ratio compares the first audio of the reply itself.", ""]
    out += ["## 4. Barge-in", ""]
    out += _table(figs, ["bargein_kill", "bargein_break", "bargein_llm", "bargein_tts"])
    out += ["", "Measured from the interim transcript that caused the effect (the last one the STT server "
            "sent before it): one word pauses the reply (killAudio + uuid_break), two words interrupt it "
            "(the turn is cancelled: the LLM HTTP stream closes, the TTS gRPC streams are cancelled).", ""]
    return out


_STEP_COLUMNS = (("calls", "calls"), ("forks up", "forks_up"), ("ctl CPU %", "controller_cpu_pct"),
                 ("CPU %/call", "cpu_pct_per_call"), ("RSS MB", "rss_mb"), ("RSS MB/call", "rss_mb_per_call"),
                 ("jitter p50", "jitter_p50_ms"), ("jitter p99", "jitter_p99_ms"), ("jitter max", "jitter_max_ms"),
                 ("replies", "replies_in_window"), ("loadgen CPU %", "loadgen_cpu_pct"),
                 ("loadgen tick late p99", "loadgen_tick_late_p99_ms"))


def _steps_table(steps: list[dict[str, Any]]) -> list[str]:
    head = [c for c, _ in _STEP_COLUMNS] + ["loop lag p99/max", "gRPC leg p99", "controller leg p99",
                                             "fork socket leg p99"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for st in steps:
        lag = st.get("controller_loop_lag") or {}
        split = st.get("outgoing_split") or {}
        legs = [_fmt((split.get(k) or {}).get("p99")) for k in ("grpc_ms", "controller_ms", "fork_socket_ms")]
        out.append("| " + " | ".join(_fmt(st.get(k)) for _, k in _STEP_COLUMNS)
                   + f" | {_fmt(lag.get('p99_ms'))}/{_fmt(lag.get('max_ms'))} | " + " | ".join(legs) + " |")
    return out


def _scale_md(results: dict[str, Any], fig: dict[str, Any]) -> list[str]:
    scale = results.get("scale")
    if not scale:
        return []
    out = ["## 5. Scale: concurrent calls in one controller process", "",
           "Each call: inbound audio every 20 ms (speech for 1.2 s every 6 s, silence otherwise, as "
           "mod_audio_fork sends), a reply to every question (LLM + streamed TTS at twice real time). The "
           "simulator runs in the load process with one shared media clock (`benchmarks/lightsim.py`). "
           "**Jitter** = per outgoing audio frame, its arrival at FreeSWITCH minus the moment the controller "
           "could first have sent it (the TTS server sent it, or the call's previous frame arrived: a "
           "sentence waits for the previous one by design), minus the call's smallest such delay. Each "
           "TTS chunk carries a marker, so the same frame is matched at the TTS server, inside the "
           "controller (probes) and at the simulator; the p99 of the three legs is listed. Times in ms.", "",
           f"Largest N with jitter p99 <= 10 ms: **{_fmt(fig['value'])}** (target >= 500). At the largest N "
           f"measured ({(fig.get('largest_step') or {}).get('calls')}): CPU {_fmt(fig['cpu_pct_per_call'])} % "
           f"of a core per call, RSS {_fmt(fig['rss_mb_per_call'])} MB per call over the idle controller "
           f"({_fmt(results.get('controller_idle_rss_mb'))} MB). The ramp goes on two steps past the limit "
           "(while the controller is below 90 % CPU) to show how it breaks.", ""]
    out += _steps_table(scale.get("steps", []))
    for name, exp in (results.get("experiments") or {}).items():
        out += ["", f"Same ramp, controller with the experiment **{name}** (benchmarks/controller.py):", ""]
        out += _steps_table(exp.get("steps", []))
        if exp.get("latency"):
            theirs = summarise({"latency": exp["latency"]})
            ours = results["figures"]
            out += ["", f"Latency figures with **{name}** (fewer calls) next to the product as it is:", "",
                    "| figure (ms) | as is: median / p99 | with the experiment: median / p99 |", "|---|---|---|"]
            for key in ("overhead_audio_out", "bargein_kill", "bargein_break", "bargein_llm", "bargein_tts",
                        "ttfa_streaming", "greeting_warm"):
                a, b = ours.get(key, {}), theirs.get(key, {})
                out.append(f"| {a.get('label', key)} | {_fmt(a.get('median'))} / {_fmt(a.get('p99'))} | "
                           f"{_fmt(b.get('median'))} / {_fmt(b.get('p99'))} (n={b.get('n')}) |")
    return [*out, ""]


_DRILL_TEXT = {
    "control": "no fault (reference)",
    "stt_cut": "STT stream aborted (OUT_OF_RANGE) at the 3rd interim result, mid-utterance",
    "llm_timeout": "primary LLM never sends a token (failover to the secondary)",
    "tts_failing": "TTS answers UNAVAILABLE for the reply's sentences",
    "fork_drop": "fork TCP connection cut 300 ms into the agent's reply",
}


def _drills_md(results: dict[str, Any]) -> list[str]:
    out = ["## Fault drills", "",
           "Silence = from the end of the caller's question to the next audio the caller hears (the "
           "no-fault reference includes the fixed provider latencies). Lost = reply audio not heard.", "",
           "| drill | fault | silence after question ms | reply heard / expected ms | lost ms | notes |",
           "|---|---|---|---|---|---|"]
    for name, d in (results.get("drills") or {}).items():
        if not isinstance(d, dict):
            continue
        notes = [f"{k} = {_fmt(d[k])}" for k in ("stream_cut", "failover_after_ms", "tts_requests_failed",
                                                   "apology_heard", "fork_reconnected_after_ms",
                                                   "silence_after_drop_ms", "caller_audio_lost_ms", "error")
                 if k in d]
        notes.append(f"transcript complete = {d.get('transcript_complete')}")
        out.append(f"| {name} | {_DRILL_TEXT.get(name, '')} | {_fmt(d.get('silence_after_question_ms'))} | "
                   f"{_fmt(d.get('reply_heard_ms'))} / {_fmt(d.get('reply_expected_ms'))} | "
                   f"{_fmt(d.get('reply_lost_ms'))} | {'; '.join(notes)} |")
    burst = results.get("burst")
    if burst:
        rows = burst.get("calls", [])
        out += ["", f"**{len(rows)} calls arriving in {burst.get('arrival_s')} s**: {burst.get('finished')} "
                f"finished, hung up by: {_count(rows)}; controller CPU {burst.get('controller_cpu_pct')} %, "
                f"load process CPU {burst.get('loadgen_cpu_pct')} % over the burst.", "",
                "| (ms) | n | min | median | p99 | max |", "|---|---|---|---|---|---|"]
        for key in ("connect_to_answer_ms", "answer_to_greeting_heard_ms", "silence_after_question_ms"):
            st = stats(column(rows, key))
            out.append(f"| {key} | {st['n']} | {_fmt(st['min'])} | {_fmt(st['median'])} | {_fmt(st['p99'])} | "
                       f"{_fmt(st['max'])} |")
    soak = results.get("soak")
    if soak and soak.get("samples"):
        samples = soak["samples"]
        warm = [r for t, r in samples if t >= soak["duration_s"] * 0.2] or [r for _t, r in samples]
        concurrent = results.get("meta", {}).get("plan", {}).get("soak_concurrent")
        out += ["", f"**Soak**: {soak.get('duration_s')} s with {concurrent} calls at a time, "
                f"{soak.get('calls')} calls, ended by {soak.get('ended_by')}. Controller RSS "
                f"{_fmt(samples[0][1])} MB at the start, {_fmt(min(warm))}-{_fmt(max(warm))} MB after the first "
                f"20 %, {_fmt(samples[-1][1])} MB at the end; growth after the first 20 %: "
                f"{_fmt(_slope(samples, soak['duration_s'] * 0.2))} MB per minute (least squares).", ""]
    check = results.get("soak_check")
    if check and check.get("samples"):
        samples = check["samples"]
        out += [f"{check.get('note', '')} {check.get('duration_s')} s, {check.get('calls')} calls: RSS "
                f"{_fmt(samples[0][1])} MB at the start, {_fmt(samples[-1][1])} MB at the end, growth after the "
                f"first 20 %: {_fmt(_slope(samples, check['duration_s'] * 0.2))} MB per minute.", ""]
    restart = results.get("restart")
    if restart:
        rows = restart.get("observed", {}).get("calls", [])
        rec = restart.get("recovered", {})
        returned = stats(column(rows, "socket_app_returned_after_kill_ms"))
        out += [f"**Controller killed (SIGKILL) with {restart.get('prepared', {}).get('calls_up')} calls up**: "
                f"the `socket` application returned after {_fmt(returned['min'])}-{_fmt(returned['max'])} ms on "
                f"every call (hung up by: {_count(rows)}), so FreeSWITCH goes on with the dialplan's fallback "
                "(conf/freeswitch/dialplan/public.xml: log, apology playback, hangup). The simulator models "
                "the end of the dialplan as a hangup, so the apology itself is not simulated; the caller's "
                "silence is that socket return time. A new controller was ready "
                f"{_fmt(restart.get('controller_start_ms'))} ms after the kill; the first new call was greeted "
                f"{_fmt(rec.get('kill_to_new_call_greeted_ms'))} ms after the kill.", ""]
    return [*out, ""]


def _count(rows: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in rows:
        by = str((r.get("hangup") or {}).get("by"))
        counts[by] = counts.get(by, 0) + 1
    return counts


def _slope(samples: list[list[float]], after: float) -> float | None:
    pts = [(t, r) for t, r in samples if t >= after]
    if len(pts) < 3:
        return None
    t = np.array([p[0] for p in pts]) / 60.0
    r = np.array([p[1] for p in pts])
    return round(float(np.polyfit(t, r, 1)[0]), 3)


def _findings_md(results: dict[str, Any]) -> list[str]:
    """What the numbers say, computed from this run (the prose around them is fixed)."""
    figs = results["figures"]
    out = ["## Findings", ""]
    scale = results.get("scale") or {}
    steps = scale.get("steps", [])
    exp = (results.get("experiments") or {}).get("fork_nodelay") or {}
    esteps = exp.get("steps", [])
    if steps and esteps:
        a, b = steps[0], esteps[0]
        leg = lambda st: ((st.get("outgoing_split") or {}).get("fork_socket_ms") or {}).get("p99")  # noqa: E731
        passing = lambda ss: max((s["calls"] for s in ss if (s.get("jitter_p99_ms") or 1e9) <= 10  # noqa: E731
                                  and s.get("forks_up") == s.get("calls")), default=None)
        theirs = summarise({"latency": exp["latency"]}) if exp.get("latency") else {}
        kill_a, kill_b = figs["bargein_kill"], theirs.get("bargein_kill", {})
        if (leg(a) or 0) < 5.0:
            out += ["1. **TCP_NODELAY on the fork socket**: the code measured already sets it (the fork-socket "
                    f"leg p99 is {_fmt(leg(a))} ms at {a['calls']} calls); the `fork_nodelay` experiment ramp is "
                    "a repeat of the same code."]
        else:
            out += ["1. **The fork socket has no TCP_NODELAY** (`ForkServer._handle`; the event socket sets it). "
                "Nagle holds an audio chunk or a killAudio written while the previous write is unacknowledged "
                "until FreeSWITCH's next 20 ms frame carries the ACK. Measured with the switch on (experiment "
                f"`fork_nodelay`): fork-socket leg p99 at {a['calls']} calls {_fmt(leg(a))} -> {_fmt(leg(b))} ms, "
                f"outgoing jitter p99 {_fmt(a.get('jitter_p99_ms'))} -> {_fmt(b.get('jitter_p99_ms'))} ms, largest N "
                f"within 10 ms {passing(steps) or 'none'} -> {passing(esteps) or 'none'}, "
                "interim -> killAudio median/p99 "
                f"{_fmt(kill_a.get('median'))}/{_fmt(kill_a.get('p99'))} -> {_fmt(kill_b.get('median'))}/"
                f"{_fmt(kill_b.get('p99'))} ms. Change: first line of `ForkServer._handle`: "
                "`sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)` (applied in commit be82b0f "
                "while this run was going; the run measured the code before it)."]
    prof = scale.get("profile") or {}
    per_frame = {w: pct for w, _n, pct in prof.get("per_frame_path", [])}
    cumulative = {w: pct for w, _n, pct in prof.get("top_cumulative", [])}
    own = {w: pct for w, _n, pct in prof.get("top_own", [])}
    all_steps = [st for st in steps + esteps if st.get("forks_up") == st.get("calls")]
    top = max(all_steps, key=lambda st: st["calls"]) if all_steps else {}
    cpu = top.get("cpu_pct_per_call")
    if cpu:
        grpc_req = cumulative.get("grpc/_channel.py(_consume_request_iterator.<locals>.consume_request_iterator)")
        out += [f"2. **CPU is the ceiling long before 500 calls**: {_fmt(cpu)} % of a core per call at "
                f"{top['calls']} calls (more at fewer calls: fixed costs), i.e. about {100 / cpu:.0f} calls per "
                f"core if nothing else ran; at {top['calls']} calls the outgoing jitter p99 was already "
                f"{_fmt(top.get('jitter_p99_ms'))} ms, mostly in the gRPC delivery of TTS chunks (its leg p99 "
                f"{_fmt(((top.get('outgoing_split') or {}).get('grpc_ms') or {}).get('p99'))} ms). In the profile "
                f"({(scale.get('profiled_step') or {}).get('calls')} calls) the per-call streams dominate: the fork "
                f"WebSocket reader `ForkServer._handle` (wsproto parsing and unmasking, 50 frames/s per call) "
                f"{_fmt(per_frame.get('esl_agent/media/fork_server.py(ForkServer._handle)'))} % of busy samples, "
                f"gRPC's request-iterator consumer for the STT stream (10 requests/s per call, proto-plus "
                f"messages) {_fmt(grpc_req)} %, the gevent hub itself (a wake-up per frame) "
                f"{_fmt(own.get('gevent/hub.py(Hub.run)'))} % own. Measured separately on copies (this session): "
                "wsproto costs 11.4 us per 320-byte fork frame where a minimal RFC 6455 reader costs 1.9 us "
                "(about 0.05 % of a core per call saved: not the bottleneck); the Google STT client alone "
                "costs 0.33 % of a core per stream with 100 ms requests and 0.23 % with 250 ms (server in "
                "another process); proto-plus request building 3.5 us vs 1.7 us wrapped raw protobuf. The rest "
                "is per reply (OpenAI SDK streaming, a gRPC stream per sentence, ESL events and state "
                "publishing): see the cumulative profile. 500 calls need several controller processes."]
    split = (results.get("latency") or {}).get("turn_split") or {}
    if split:
        http = split.get("http_client_ms", {})
        out += [f"3. **Final transcript -> LLM request** is {_fmt(figs['overhead_llm']['median'])} ms over the "
                "end-of-turn wait (median); the probes put most of it in the OpenAI SDK building and sending the "
                f"request (median {_fmt(http.get('median'))} ms, p99 {_fmt(http.get('p99'))}); gRPC delivery of "
                f"the transcript {_fmt(split.get('grpc_delivery_ms', {}).get('median'))} ms, the timer "
                f"{_fmt((split.get('end_of_turn_wait_ms', {}).get('median') or 300) - 300)} ms late, the reply's "
                f"set-up {_fmt(split.get('reply_setup_ms', {}).get('median'))} ms."]
    out += ["4. **The first LLM request after start** stalls the whole process for 30-50 ms (seen while "
            "developing this harness; the run above pays it in an unmeasured warm-up call): the OpenAI SDK "
            "imports its resource modules lazily and `platform.platform()` runs `uname -p` through "
            "subprocess (a fork in a gevent + gRPC process; gRPC logs 'skipping fork() handlers'). Warming "
            "both at start-up removes it: call `platform.platform()` in `esl_agent.runtime.init()` before "
            "gRPC starts threads, and touch `client.chat.completions` when the provider is built.",
            "5. **Warm greeting**: the controller queues `playback` before the answer has even run; the time "
            "is FreeSWITCH's ~20 ms application dispatch plus the 20 ms media tick. Under 20 ms needs the "
            "greeting streamed over the fork as soon as it connects (~4-5 ms after the answer here) instead "
            "of a file playback: estimated 5-25 ms from the measured fork set-up and the streamed-audio "
            "playout (not measured: it needs a product change).",
            "6. **Sentence streaming ratio**: the controller adds only a few ms (figure 2); the ratio is set by "
            "the reply's shape. Starting TTS at the first clause (e.g. a comma after >= 3 words) instead of "
            "the first full stop would have started the first reply ~0.3 s earlier here (the first comma comes "
            f"10 word-chunks before the first full stop at 30 ms each): about {_clause_ratio(figs)} instead of "
            f"{_fmt(figs['ttfa_ratio']['value'])} (estimate from the medians).",
            "7. **Fork drop**: the controller restarts the fork (after its 0.5 s grace for a hangup) but the "
            "reply audio already written to the dead socket is lost; resuming the reply from the heard "
            "position after the restart (as the false-interruption resume does) would save it.",
            *_orphaned_tts(results), *_stalls(results)]
    out += ["",
            "Not measured here: real FreeSWITCH and real provider timing (simulated / fixed loopback "
            "latencies), 500 concurrent calls (the controller saturates a core far earlier, and the load "
            "process could not generate that load on this shared 2-core machine either), the apology the "
            "dialplan plays after a controller crash (the simulator ends the dialplan with a hangup).", ""]
    return out


def _stalls(results: dict[str, Any]) -> list[str]:
    steps = (results.get("scale") or {}).get("steps", [])
    lags = [((st.get("controller_loop_lag") or {}).get("max_ms"), st["calls"]) for st in steps]
    lags = [(lag, calls) for lag, calls in lags if lag is not None]
    if not lags or max(lags)[0] < 50:
        return []
    worst, calls = max(lags)
    return [f"9. **Stalls of the whole controller**: the hub could not switch for up to {_fmt(worst)} ms "
            f"(loop lag max at {calls} calls; p99 stays at 2-3 ms), and the settrace probe caught single "
            "greenlet runs of ~110 ms inside call set-up. " + _gc_evidence(results)]


def _gc_evidence(results: dict[str, Any]) -> str:
    """Generation-2 collections timed with gc.callbacks (scale steps, or a follow-up check)."""
    found = []
    for st in (results.get("scale") or {}).get("steps", []):
        gen2 = (st.get("controller_gc") or {}).get("gen2")
        if gen2:
            found.append((gen2["max_ms"], st["calls"], (st.get("controller_loop_lag") or {}).get("max_ms")))
    check = results.get("gc_check")
    if check and (check.get("gc") or {}).get("gen2"):
        found.append((check["gc"]["gen2"]["max_ms"], check["calls"], check.get("loop_lag_max_ms")))
    if not found:
        return ("They look like CPython's full (generation 2) garbage collections; time them with "
                "`gc.callbacks` to confirm.")
    gen2, calls, lag = max(found)
    return (f"They are CPython's full (generation 2) garbage collections: timed with `gc.callbacks`, one took "
            f"{_fmt(gen2)} ms at {calls} calls (loop lag max {_fmt(lag)} ms in the same window). Cure: "
            "`gc.freeze()` once start-up is done (the start-up objects leave the collected generations) and "
            "higher thresholds (`gc.set_threshold(50_000, 20, 100)` or so) in `esl_agent.runtime.init`, "
            "then measure again.")


def _clause_ratio(figs: dict[str, Any]) -> str:
    streaming, whole = figs["ttfa_streaming"]["median"], figs["ttfa_whole"]["median"]
    if not streaming or not whole:
        return "-"
    return f"{(streaming - 300.0) / whole:.2f}"


def _orphaned_tts(results: dict[str, Any]) -> list[str]:
    """Barge-ins where a TTS stream opened just before the interrupt was not cancelled in time."""
    late, total = [], 0
    sources = [results.get("latency") or {}]
    sources += [e.get("latency") or {} for e in (results.get("experiments") or {}).values()]
    for latency in sources:
        for call in latency.get("calls", []):
            detail = call.get("tts_cancel_detail")
            if not detail:
                continue
            total += 1
            late += [(opened, ended) for opened, ended, _chunks, _text in detail if ended > 50]
    if not late:
        return []
    opened, ended = late[0]
    return [f"8. **A TTS stream opened at the moment of a barge-in is not cancelled**: {len(late)} of {total} "
            f"barge-ins left one running (e.g. opened {_fmt(-opened)} ms before the interrupting interim, "
            f"cancelled {_fmt(ended)} ms after it). `GoogleTextToSpeech._streaming` assigns `call` only after "
            "`client.streaming_synthesize(...)` returns, and that call switches greenlets while it starts "
            "gRPC's request consumer; a kill landing there leaves `call` None, so the `finally` cannot cancel "
            "it and the sentence is synthesised (and billed) for nothing. Fix: open the call in a child "
            "greenlet that cancels it itself if the turn was cancelled meanwhile, e.g. `def open_(): c = "
            "client.streaming_synthesize(...); c.cancel() if turn.cancelled else None; return c` and "
            "`call = gevent.spawn(open_).get()`."]


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
