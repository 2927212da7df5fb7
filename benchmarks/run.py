"""The orchestrator: starts the load process and the controller, runs every scenario, writes the report.

Plain Python (no gevent): it only starts processes, sends them JSON commands and reads /proc.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks import profiler, report
from benchmarks.common import contact_name, contact_number
from benchmarks.procs import Child, free_port, proc_stats

ROOT = Path(__file__).resolve().parent.parent

# Fixed loopback latencies (seconds): the figures isolate what the controller adds to them.
LATENCIES = {
    "llm_first_token": 0.30,  # time to first token of the model
    "llm_token_interval": 0.03,  # one word per chunk, ~33 words/s
    "tts_first_byte": 0.12,  # streaming TTS time to first audio
    "tts_chunk_interval": 0.05,  # 100 ms audio chunks at twice real time
    "stt_end_silence_ms": 300,  # recogniser endpointing before a final result
}

MODES: dict[str, dict[str, Any]] = {
    "quick": {"latency_calls": 3, "overlap_drills": True, "burst_calls": 100, "scale_steps": [20],
              "scale_window_s": 3.0, "profile_in_ramp": True, "soak_s": 8.0, "soak_concurrent": 10,
              "restart_mid_reply": False},
    "full": {"latency_calls": 20, "latency_stagger_s": 1.0, "burst_calls": 100,
             "scale_steps": [10, 20, 30, 40, 60, 80, 100, 150, 200, 300, 400, 500], "scale_window_s": 10.0,
             "profile_calls": 40, "profile_window_s": 10.0, "soak_s": 1800.0, "soak_concurrent": 30,
             "overlap_drills": False, "steps_past_limit": 2, "experiment_ramps": ["fork_nodelay"]},
}
CONTACTS = 120  # known callers (each with a rendered greeting); scale and soak use unknown numbers
JITTER_TARGET_MS = 10.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="BENCHMARKS.md", help="Markdown report (JSON next to it)")
    parser.add_argument("--quick", action="store_true", help="small N, short soak: under a minute")
    parser.add_argument("--soak-seconds", type=float, help="override the soak duration")
    parser.add_argument("--scale-steps", help="override the scale ramp, e.g. 100,200,400")
    parser.add_argument("--latency-calls", type=int, help="override the latency calls per variant")
    parser.add_argument("--burst-calls", type=int, help="override the size of the burst")
    parser.add_argument("--debug", action="store_true", help="keep timelines of the latency calls")
    parser.add_argument("--experiment", action="append", default=[],
                        help="controller experiment switch (see benchmarks/controller.py), e.g. fork_nodelay")
    parser.add_argument("--render-only", metavar="JSON", help="re-render the report from a results JSON")
    parser.add_argument("--only", help="comma-separated sections to run (latency,drills,burst,scale,soak,restart)")
    args = parser.parse_args(argv)
    if args.render_only:
        results = json.loads(Path(args.render_only).read_text())
        report.write(Path(args.out), results)
        print(f"rendered {args.out}")
        return 0
    mode = "quick" if args.quick else "full"
    plan = dict(MODES[mode])
    if args.soak_seconds is not None:
        plan["soak_s"] = args.soak_seconds
    if args.scale_steps:
        plan["scale_steps"] = [int(x) for x in args.scale_steps.split(",")]
    if args.latency_calls is not None:
        plan["latency_calls"] = args.latency_calls
    if args.burst_calls is not None:
        plan["burst_calls"] = args.burst_calls
    only = set(args.only.split(",")) if args.only else None
    plan["debug"] = args.debug
    plan["experiments"] = args.experiment
    started = time.time()
    out = Path(args.out)
    meta = {"mode": mode, "plan": plan, "latencies": LATENCIES, "started": started, "machine": report.machine(),
            "git": _git_state()}
    results = run(plan, only, checkpoint=out.with_suffix(".partial.json"), meta=meta)
    meta["duration_s"] = round(time.time() - started, 1)
    results["meta"] = meta
    report.write(out, results)
    out.with_suffix(".partial.json").unlink(missing_ok=True)
    print(f"wrote {out} and {out.with_suffix('.json')} in {results['meta']['duration_s']} s")
    return 0


def _want(only: set[str] | None, name: str) -> bool:
    return only is None or name in only


def run(plan: dict[str, Any], only: set[str] | None, checkpoint: Path | None = None,
        meta: dict[str, Any] | None = None) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="esl-agent-bench-"))
    logs = work / "logs"
    logs.mkdir()
    contacts = work / "contacts.yaml"
    contacts.write_text(yaml.safe_dump({"contacts": [
        {"name": contact_name(i), "numbers": [contact_number(i)], "transfer": "201"} for i in range(CONTACTS)
    ]}))
    results: dict[str, Any] = {"work_dir": str(work), "meta": meta or {}}

    def save() -> None:  # after every section: a crash late in a long run keeps what was measured
        if checkpoint is not None:
            checkpoint.write_text(json.dumps(results, default=str))

    lab = Child("benchmarks.loadgen", [], logs / "loadgen.log", ROOT)
    spec = {"work": str(work), "esl_port": free_port(), "fork_port": free_port(),
            "stt_port": lab.ready["stt_port"], "llm_port": lab.ready["llm_port"],
            "llm2_port": lab.ready["llm2_port"], "contacts": str(contacts),
            "policy": str(ROOT / "conf" / "policy.yaml"), "audio_probe": True,
            **{name: True for name in plan.get("experiments", [])}}
    ctl = Child("benchmarks.controller", ["--spec", json.dumps(spec)], logs / "controller.log", ROOT)
    try:
        lab.call("configure", esl_port=spec["esl_port"], latencies=LATENCIES)
        _, results["controller_start_rss_mb"] = proc_stats(ctl.pid)
        results["warm_up"] = lab.call("warm_up")
        time.sleep(0.5)
        _, idle_rss = proc_stats(ctl.pid)
        results["controller_idle_rss_mb"] = round(idle_rss, 1)
        if _want(only, "scale"):  # first: RSS per call is measured against the idle controller
            results["scale"] = _scale(lab, ctl, plan, idle_rss, work)
            save()
            for experiment in plan.get("experiment_ramps", []):
                results.setdefault("experiments", {})[experiment] = _experiment_ramp(
                    lab, spec, plan, experiment, logs, work)
                save()
        if plan.get("overlap_drills") and _want(only, "latency") and _want(only, "drills"):
            _say("latency figures and fault drills (overlapping)")
            ctl.call("turn_probe")
            both = lab.call("latency_and_drills", calls_per_variant=plan["latency_calls"],
                            debug=bool(plan.get("debug")))
            results["latency"], results["drills"] = both["latency"], both["drills"]
            save()
            only = (only or {"latency", "drills", "burst", "soak", "restart"}) - {"latency", "drills"}
        if _want(only, "latency"):
            _say("latency figures")
            ctl.call("turn_probe")
            results["latency"] = lab.call("latency", calls_per_variant=plan["latency_calls"],
                                          stagger_s=plan.get("latency_stagger_s", 0.35),
                                          debug=bool(plan.get("debug")))
        if "latency" in results:
            results["latency"]["turn_split"] = _turn_split(results["latency"], ctl.call("turn_probe"))
            save()
        if _want(only, "drills"):
            _say("fault drills")
            results["drills"] = lab.call("drills")
            save()
        if _want(only, "burst"):
            _say(f"{plan['burst_calls']} calls in one second")
            results["burst"] = lab.call("burst", calls=plan["burst_calls"], controller_pid=ctl.pid)
            save()
        if _want(only, "soak"):
            _say(f"soak {plan['soak_s']:.0f} s")
            results["soak"] = lab.call("soak", duration_s=plan["soak_s"], concurrent=plan["soak_concurrent"],
                                       controller_pid=ctl.pid)
            save()
        if _want(only, "restart"):
            _say("controller restart with calls up")
            results["restart"], ctl = _restart(lab, ctl, spec, logs, plan.get("restart_mid_reply", True))
        results["controller_final"] = ctl.call("snapshot")
    finally:
        ctl.stop()
        lab.stop()
    results["logs"] = {p.name: _tail(p) for p in logs.iterdir()}
    shutil.rmtree(work / "audio", ignore_errors=True)
    return results


def _scale(lab: Child, ctl: Child, plan: dict[str, Any], idle_rss: float, work: Path,
           profile: bool = True) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    past = 0
    for calls in plan["scale_steps"]:
        _say(f"scale: {calls} calls")
        ctl.call("lag")
        ctl.call("gc")
        spy = None
        if plan.get("profile_in_ramp"):
            spy = profiler.start(ctl.pid, work / "py-spy.txt", duration_s=plan["scale_window_s"] + 60)
            ctl.call("trace_start", threshold_ms=3.0)
        step = lab.call("scale_step", calls=calls, window_s=plan["scale_window_s"], controller_pid=ctl.pid,
                        idle_rss_mb=idle_rss)
        step["controller_loop_lag"] = ctl.call("lag")
        step["controller_gc"] = ctl.call("gc")
        step["outgoing_split"] = _split(step.pop("raw_frames", []), ctl.call("audio_probe"))
        if plan.get("profile_in_ramp"):
            step["blocking"] = ctl.call("trace_stop")
            step["profile"] = profiler.finish(spy, work / "py-spy.txt")
        steps.append(step)
        jitter = step.get("jitter_p99_ms")
        failed = "error" in step or jitter is None or jitter > JITTER_TARGET_MS or step["forks_up"] < calls
        if failed:
            past += 1
            # go on a little past the limit to show how it breaks, unless the controller is saturated
            if past > plan.get("steps_past_limit", 0) or step.get("controller_cpu_pct", 100) >= 90:
                break
    if not profile:
        return {"steps": steps}
    if plan.get("profile_in_ramp"):  # quick mode: the profile was taken during the last step
        return {"steps": steps, "profiled_step": steps[-1], "profile": steps[-1].pop("profile", {}),
                "blocking": steps[-1].pop("blocking", {})}
    _say(f"profile of the per-frame path at {plan['profile_calls']} calls")
    spy = profiler.start(ctl.pid, work / "py-spy.txt", duration_s=plan["profile_window_s"] + 60)
    ctl.call("trace_start", threshold_ms=3.0)
    profiled = lab.call("scale_step", calls=plan["profile_calls"], window_s=plan["profile_window_s"],
                        controller_pid=ctl.pid, idle_rss_mb=idle_rss)
    blocking = ctl.call("trace_stop")
    profiled["outgoing_split"] = _split(profiled.pop("raw_frames", []), ctl.call("audio_probe"))
    profile = profiler.finish(spy, work / "py-spy.txt")
    return {"steps": steps, "profiled_step": profiled, "profile": profile, "blocking": blocking}


def _split(raw: list[list[Any]], probe: dict[str, Any]) -> dict[str, Any]:
    """Percentiles of the outgoing path's three legs per marked chunk (ms): loopback server ->
    controller (gRPC delivery), inside the controller (from the moment the chunk could go: it
    arrived, or the call's previous chunk was written, whichever is later; so waiting for the
    previous sentence by design is not counted), fork socket -> simulator."""
    received = {int(k): v for k, v in (probe.get("received") or {}).items()}
    written = {int(k): v for k, v in (probe.get("written") or {}).items()}
    legs: dict[str, list[float]] = {"grpc_ms": [], "controller_ms": [], "fork_socket_ms": []}
    by_call: dict[str, list[tuple[float, float, float, float]]] = {}
    for chunk_id, sent, arrived, uuid in raw:
        got, out = received.get(int(chunk_id)), written.get(int(chunk_id))
        if sent is not None and got is not None and out is not None:
            by_call.setdefault(uuid, []).append((out, got, sent, arrived))
    for chunks in by_call.values():
        chunks.sort()
        previous = None
        for out, got, sent, arrived in chunks:
            ready = got if previous is None else max(got, previous)
            legs["grpc_ms"].append((got - sent) * 1000)
            legs["controller_ms"].append((out - ready) * 1000)
            legs["fork_socket_ms"].append((arrived - out) * 1000)
            previous = out
    return {name: report.stats(values) for name, values in legs.items()}


def _experiment_ramp(lab: Child, spec: dict[str, Any], plan: dict[str, Any], experiment: str,
                     logs: Path, work: Path) -> dict[str, Any]:
    """The same scale ramp against a second controller with one experiment switched on."""
    _say(f"scale ramp again with the experiment {experiment}")
    espec = dict(spec, esl_port=free_port(), fork_port=free_port(), **{experiment: True})
    ctl = Child("benchmarks.controller", ["--spec", json.dumps(espec)], logs / f"controller-{experiment}.log", ROOT)
    try:
        lab.call("configure", esl_port=espec["esl_port"], latencies=LATENCIES)
        lab.call("warm_up")
        time.sleep(0.5)
        _, idle_rss = proc_stats(ctl.pid)
        ramp = dict(plan, profile_in_ramp=False, experiment_ramps=[])
        result = _scale(lab, ctl, ramp, idle_rss, work, profile=False)
        _say(f"latency figures with the experiment {experiment}")
        result["latency"] = lab.call("latency", calls_per_variant=max(1, plan["latency_calls"] // 2),
                                     stagger_s=plan.get("latency_stagger_s", 0.35))
    finally:
        ctl.stop()
        lab.call("configure", esl_port=spec["esl_port"], latencies=LATENCIES)
    return result


def _turn_split(latency: dict[str, Any], probe: dict[str, list[list[Any]]]) -> dict[str, Any]:
    """Split "final transcript -> first LLM request" (first turn of each call) into its legs (ms)."""
    legs: dict[str, list[float]] = {"grpc_delivery_ms": [], "end_of_turn_wait_ms": [],
                                    "reply_setup_ms": [], "http_client_ms": []}
    for call in latency.get("calls", []):
        name, final, request = call.get("name"), call.get("final_at"), call.get("llm_request_at")
        events = probe.get(name or "", [])
        if final is None or request is None:
            continue
        final_in = next((t for kind, t in events if kind == "final_in" and t >= final), None)
        end = next((t for kind, t in events if kind == "end_of_turn" and final_in and t >= final_in), None)
        opened = next((t for kind, t in events if kind == "llm_stream" and end and t >= end), None)
        if None in (final_in, end, opened) or opened > request:
            continue
        legs["grpc_delivery_ms"].append((final_in - final) * 1000)
        legs["end_of_turn_wait_ms"].append((end - final_in) * 1000)
        legs["reply_setup_ms"].append((opened - end) * 1000)
        legs["http_client_ms"].append((request - opened) * 1000)
    return {name: report.stats(values) for name, values in legs.items()}


def _restart(lab: Child, ctl: Child, spec: dict[str, Any], logs: Path,
             mid_reply: bool = True) -> tuple[dict[str, Any], Child]:
    prepared = lab.call("restart_prepare", calls=3, mid_reply=mid_reply)
    killed_at = ctl.kill()
    started = time.monotonic()
    new = Child("benchmarks.controller", ["--spec", json.dumps(spec)], logs / "controller-restarted.log", ROOT)
    ready_ms = round((time.monotonic() - started) * 1000, 1)
    observed = lab.call("restart_observe", killed_at=killed_at)
    recovered = lab.call("restart_recovered", killed_at=killed_at)
    return {"prepared": prepared, "observed": observed, "recovered": recovered,
            "controller_start_ms": ready_ms}, new


def _git_state() -> dict[str, Any]:
    """The commit measured and whether the working tree differed from it (a shared checkout)."""
    import subprocess

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = [line[3:] for line in git("status", "--porcelain", "--", "esl_agent").splitlines()]
    return {"head": git("rev-parse", "--short", "HEAD"), "uncommitted_in_esl_agent": changed}


def _tail(path: Path, lines: int = 15) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def _say(what: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {what}", flush=True)
