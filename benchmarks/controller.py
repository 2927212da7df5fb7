"""The controller under test, in its own process: `python -m benchmarks.controller --spec JSON`.

Builds the production parts with `esl_agent.assembly.build_agent` against the loopback providers,
warms the greeting cache, and routes each call by its destination number: OPTIMISED_DID gets the
production conversation (sentence streaming + greeting cache), BASELINE_DID the same conversation
with both tricks off (whole-reply TTS, live TTS greeting). Prints one JSON line when ready, then
answers JSON-line commands on stdin (snapshot, quit).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import gc
import json
import logging
import os
import sys
import time
import typing
from pathlib import Path
from typing import Any

from esl_agent import runtime

runtime.init()

import gevent  # noqa: E402
import greenlet  # noqa: E402

from benchmarks.common import BASELINE_DID, GENERIC_GREETING, KNOWN_GREETING, send, stdin_lines  # noqa: E402
from benchmarks.servers import MAGIC  # noqa: E402
from esl_agent import config  # noqa: E402
from esl_agent.app import Controller  # noqa: E402
from esl_agent.assembly import Agent, build_agent  # noqa: E402

GROQ_KEY_ENV = "ESL_AGENT_BENCH_GROQ_KEY"


class GreetingCacheOff:
    """The baseline: no prepared greeting file, so every call greets with live TTS."""

    def __init__(self, cache: Any) -> None:
        self._cache = cache

    def lookup(self, caller_number: str) -> None:
        return None

    def miss(self, caller_number: str) -> None:
        return None

    def text_for(self, contact: Any) -> str:
        return self._cache.text_for(contact)


def settings_for(spec: dict[str, Any]) -> config.Settings:
    work = Path(spec["work"])
    data = {
        "server": {"esl_listen": f"127.0.0.1:{spec['esl_port']}",
                   "fork_listen": f"127.0.0.1:{spec['fork_port']}",
                   "fork_url": f"ws://127.0.0.1:{spec['fork_port']}",
                   "http_listen": "127.0.0.1:0", "max_calls": 5000, "command_timeout": 5.0},
        "fork": {"connect_timeout": 3.0, "caller_silence_timeout": 30.0},
        "calls": {"audio_dir": str(work / "audio")},
        "stt": {"provider": "google", "language": "en-US",
                "google": {"endpoint": f"127.0.0.1:{spec['stt_port']}", "insecure": True}},
        "llm": {"chain": ["openai", "groq"], "first_token_timeout": spec.get("first_token_timeout", 1.0),
                "openai": {"model": "bench-primary", "base_url": f"http://127.0.0.1:{spec['llm_port']}/v1"},
                "groq": {"model": "bench-secondary", "base_url": f"http://127.0.0.1:{spec['llm2_port']}",
                         "api_key_env": GROQ_KEY_ENV}},
        "tts": {"provider": "google",
                "google": {"endpoint": f"127.0.0.1:{spec['stt_port']}", "insecure": True, "streaming": True}},
        "greetings": {"cache_dir": str(work / "greetings"), "generic_text": GENERIC_GREETING,
                      "known_text": KNOWN_GREETING, "warm_on_start": False, "watch_interval": 3600.0},
        "contacts": {"path": spec["contacts"]},
        "policy": {"path": spec["policy"], "audit_log": str(work / "audit.log")},
        "ops": {"log_level": "WARNING", "cdr_log": str(work / "calls.jsonl"),
                "call_records": str(work / "calls.jsonl")},
    }
    return config.from_mapping(_known(config.Settings, data), source="<benchmark>",
                               env={GROQ_KEY_ENV: "loopback"})


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """Drop keys this version of the settings does not have (the config evolves under us)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            continue
        sub = hints[key]
        out[key] = _known(sub, value) if dataclasses.is_dataclass(sub) and isinstance(value, dict) else value
    return out


class GcTimes:
    """Durations of CPython's garbage collections per generation (gc.callbacks)."""

    def __init__(self) -> None:
        self.runs: list[tuple[int, float]] = []
        self._start = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        elif len(self.runs) < 100_000:
            self.runs.append((info.get("generation", -1), time.perf_counter() - self._start))

    def report(self) -> dict[str, Any]:
        runs, self.runs = self.runs, []
        out: dict[str, Any] = {}
        for generation in (0, 1, 2):
            times = sorted(t for g, t in runs if g == generation)
            if times:
                out[f"gen{generation}"] = {"n": len(times), "max_ms": round(times[-1] * 1000, 2),
                                           "total_ms": round(sum(times) * 1000, 1)}
        return out


class LoopLag:
    """How late a 5 ms gevent sleep wakes up: the longest stretches the hub could not switch."""

    def __init__(self, period: float = 0.005, keep: int = 120_000) -> None:
        self.period = period
        self.late: collections.deque[float] = collections.deque(maxlen=keep)  # bounded: a soak is long
        gevent.spawn(self._run)

    def _run(self) -> None:
        while True:
            start = time.monotonic()
            gevent.sleep(self.period)
            self.late.append(time.monotonic() - start - self.period)

    def report(self, reset: bool) -> dict[str, Any]:
        late = sorted(self.late)
        if reset:
            self.late.clear()
        if not late:
            return {}
        pick = lambda q: round(late[min(len(late) - 1, int(q * len(late)))] * 1000, 3)  # noqa: E731
        return {"n": len(late), "p50_ms": pick(0.5), "p99_ms": pick(0.99), "max_ms": round(late[-1] * 1000, 3)}


class BlockingTrace:
    """Greenlet runs longer than `threshold` without a switch, with where they ended.

    `greenlet.settrace` sees every switch; a run is the time between the switch into a greenlet
    and the switch out of it, which is exactly how long it kept the hub (and every other call)
    waiting. Only runs over the threshold pay for a stack summary.
    """

    def __init__(self, threshold_s: float) -> None:
        self.threshold = threshold_s
        self.runs = 0
        self.slow: list[tuple[float, str]] = []
        self._since = time.perf_counter()
        self._hub = gevent.get_hub()
        self._previous = greenlet.settrace(self._trace)

    def _trace(self, event: str, args: Any) -> None:
        now = time.perf_counter()
        if event in ("switch", "throw"):
            origin = args[0]
            if origin is not self._hub:  # the hub's time is mostly waiting in epoll
                ran = now - self._since
                self.runs += 1
                if ran >= self.threshold:
                    frame = origin.gr_frame if origin.gr_frame is not None else sys._getframe(1)
                    self.slow.append((ran, _where(frame)))
        self._since = time.perf_counter()

    def stop(self) -> dict[str, Any]:
        greenlet.settrace(self._previous)
        worst = sorted(self.slow, reverse=True)
        by_where: dict[str, list[float]] = {}
        for ran, where in self.slow:
            by_where.setdefault(where, []).append(ran)
        grouped = sorted(((len(v), round(max(v) * 1000, 2), round(sum(v) * 1000, 1), k)
                          for k, v in by_where.items()), key=lambda r: -r[2])
        return {"threshold_ms": self.threshold * 1000, "runs": self.runs, "slow_runs": len(self.slow),
                "worst": [(round(r * 1000, 2), w) for r, w in worst[:15]], "by_place": grouped[:15]}


def _where(frame: Any) -> str:
    """The innermost project frame and the innermost library frame of a stack, compactly."""
    ours, theirs = [], []
    while frame is not None and len(ours) < 3:
        name = frame.f_code.co_filename
        short = f"{name.rsplit('/', 1)[-1]}:{frame.f_lineno}({frame.f_code.co_name})"
        if "/esl_agent/" in name:
            ours.append(short)
        elif not theirs and "greenlet" not in name and "gevent/" not in name:
            theirs.append(short)
        frame = frame.f_back
    return " < ".join(ours) + (f" [{theirs[0]}]" if theirs else "")


class AudioProbe:
    """Where each marked TTS chunk is inside the controller (harness instrumentation, off by default).

    Wraps two product functions in this process only: the Google TTS provider's streaming generator
    (the chunk has arrived from gRPC) and `ForkConnection.send_audio` (the chunk was written to the
    fork socket). With the loopback server's send time and the simulator's arrival time this splits
    the outgoing path into gRPC delivery, the controller itself, and the fork socket.
    """

    def __init__(self) -> None:
        from esl_agent.media import fork_server
        from esl_agent.providers import google_tts

        self.received: dict[int, float] = {}
        self.written: dict[int, float] = {}
        streaming = google_tts.GoogleTextToSpeech._streaming
        send_audio = fork_server.ForkConnection.send_audio
        received, written = self.received, self.written

        def probed_streaming(tts: Any, *args: Any, **kwargs: Any) -> Any:
            inner = streaming(tts, *args, **kwargs)
            try:
                for data in inner:
                    if data[:2] == MAGIC:
                        received[int.from_bytes(data[2:6], "little")] = time.monotonic()
                    yield data
            finally:
                inner.close()

        def probed_send_audio(conn: Any, pcm: bytes, *args: Any, **kwargs: Any) -> bool:
            ok = send_audio(conn, pcm, *args, **kwargs)
            if pcm[:2] == MAGIC:
                written[int.from_bytes(pcm[2:6], "little")] = time.monotonic()
            return ok

        google_tts.GoogleTextToSpeech._streaming = probed_streaming
        fork_server.ForkConnection.send_audio = probed_send_audio

    def take(self) -> dict[str, Any]:
        out = {"received": dict(self.received), "written": dict(self.written)}
        self.received.clear()
        self.written.clear()
        return out


class TurnProbe:
    """When a final transcript reaches the conversation, when the end of turn fires and when the
    LLM stream is opened, per caller name (harness instrumentation: wraps three product methods
    in this process). With the wire times of the loopback servers this splits
    "final transcript -> first LLM request" into gRPC delivery, the end-of-turn wait, the reply's
    set-up and the HTTP client."""

    def __init__(self) -> None:
        from esl_agent.pipeline import conversation
        from esl_agent.providers import failover

        self.events: dict[str, list[tuple[str, float]]] = {}
        events = self.events
        on_transcript = conversation.Conversation._on_transcript
        on_end = conversation.Conversation._on_end_of_turn
        stream = failover.FailoverLanguageModel.stream

        def name_of(conv: Any) -> str:
            contact = getattr(conv, "contact", None)
            return getattr(contact, "name", "") or ""

        def note(name: str, kind: str) -> None:
            if name:  # known callers only (the latency calls): unknown ones would pile up in a soak
                events.setdefault(name, []).append((kind, time.monotonic()))

        def probed_transcript(conv: Any, transcript: Any, *args: Any, **kwargs: Any) -> Any:
            if transcript.final:
                note(name_of(conv), "final_in")
            return on_transcript(conv, transcript, *args, **kwargs)

        def probed_end(conv: Any, *args: Any, **kwargs: Any) -> Any:
            note(name_of(conv), "end_of_turn")
            return on_end(conv, *args, **kwargs)

        def probed_stream(llm: Any, messages: Any, *args: Any, **kwargs: Any) -> Any:
            name = ""
            for message in messages:
                if message.role == "system" and "Caller name: " in message.content:
                    name = message.content.split("Caller name: ", 1)[1].split("\n", 1)[0].strip()
            note(name, "llm_stream")
            return stream(llm, messages, *args, **kwargs)

        conversation.Conversation._on_transcript = probed_transcript
        conversation.Conversation._on_end_of_turn = probed_end
        failover.FailoverLanguageModel.stream = probed_stream

    def take(self) -> dict[str, Any]:
        out = dict(self.events)
        self.events.clear()
        return out


def fork_nodelay_experiment() -> None:
    """Experiment (spec `fork_nodelay`): TCP_NODELAY on accepted fork sockets, as EslServer does
    for the event socket. Without it Nagle holds a chunk written while the previous one is
    unacknowledged until FreeSWITCH's next frame carries the ACK (up to 20 ms)."""
    import socket

    from esl_agent.media import fork_server

    handle = fork_server.ForkServer._handle

    def nodelay_handle(server: Any, sock: Any, address: Any) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        handle(server, sock, address)

    fork_server.ForkServer._handle = nodelay_handle


def main(argv: list[str] | None = None) -> int:
    if os.environ.get("BENCH_AUDIT_FORK"):
        import traceback

        def hook(event: str, args: Any) -> None:
            if event in ("os.fork", "subprocess.Popen", "os.posix_spawn", "os.exec", "os.system"):
                sys.stderr.write(f"AUDIT {event} {args!r}\n" + "".join(traceback.format_stack()) + "\n")

        sys.addaudithook(hook)
    parser = argparse.ArgumentParser(description="esl-agent controller for the benchmarks")
    parser.add_argument("--spec", required=True, help="JSON: ports, work dir, contacts, policy")
    args = parser.parse_args(argv)
    spec = json.loads(args.spec)
    if spec.get("switch_interval"):  # an experiment knob: the GIL hand-over interval
        sys.setswitchinterval(float(spec["switch_interval"]))
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    os.environ[GROQ_KEY_ENV] = "loopback"  # the registry reads the key through the environment
    settings = settings_for(spec)
    probe = AudioProbe() if spec.get("audio_probe") else None
    turns = TurnProbe() if spec.get("audio_probe") else None
    if spec.get("fork_nodelay"):
        fork_nodelay_experiment()
    agent = build_agent(settings, start_warmer=False)
    warm = agent.greetings.warm()
    baseline_settings = dataclasses.replace(
        settings, pipeline=dataclasses.replace(settings.pipeline, sentence_streaming=False))
    baseline: Agent = dataclasses.replace(agent, settings=baseline_settings,
                                          greetings=GreetingCacheOff(agent.greetings))

    def factory(call):
        chosen = baseline if call.caller.destination == BASELINE_DID else agent
        return chosen.conversation(call)

    controller = Controller(settings, factory, apology_file=agent.apology_file, dial_guard=agent.dial_guard)
    controller.start()
    lag = LoopLag()
    gc_times = GcTimes()
    trace: BlockingTrace | None = None
    send({"ready": True, "pid": os.getpid(), "greetings_rendered": len(warm.rendered) + warm.present})
    for line in stdin_lines():
        cmd = json.loads(line)
        op = cmd.get("op")
        if op == "snapshot":
            send(controller.snapshot())
        elif op == "turn_probe":
            send(turns.take() if turns is not None else {})
        elif op == "audio_probe":
            send(probe.take() if probe is not None else {})
        elif op == "lag":
            send(lag.report(reset=True))
        elif op == "gc":
            send(gc_times.report())
        elif op == "trace_start":
            trace = BlockingTrace(cmd.get("threshold_ms", 3.0) / 1000.0)
            send({"ok": True})
        elif op == "trace_stop":
            send(trace.stop() if trace is not None else {})
            trace = None
        elif op == "quit":
            break
        else:
            send({"error": f"unknown op {op!r}"})
    gevent.spawn(controller.shutdown, 0.5).join(timeout=10)
    send({"stopped": True})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
