"""Scenarios run in the load process; each returns plain numbers read off the wire.

Every time here is CLOCK_MONOTONIC seconds (shared by all processes), converted to milliseconds
in the results. Sources: the simulator's recorder (what FreeSWITCH saw: answer, commands,
WebSocket frames, heard audio), `BenchGoogle` (STT responses, TTS streams), `BenchLlm` (requests,
chunks, client closes).
"""

from __future__ import annotations

import os
import random
import socket
import time
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event
import numpy as np

from benchmarks.common import (
    BASELINE_DID,
    CALLER_TEXT,
    OPTIMISED_DID,
    contact_name,
    contact_number,
    reply_texts,
)
from benchmarks.lightsim import LightSim, install_mark_probe
from benchmarks.servers import sse_text
from esl_agent.pipeline.sentences import SentenceSplitter
from esl_agent.sim.caller import CallerScript, speech_like
from esl_agent.sim.freeswitch import FreeSwitchSimulator, SimulatedCall

if TYPE_CHECKING:
    from benchmarks.loadgen import Lab

_known = iter(range(10**9))  # known callers: contact_name(i) is in the contacts file
_unknown = iter(range(1_000_000, 10**9))  # callers not in the contacts file (load, soak)


def _index() -> int:
    """The next known caller (each has a contact, a rendered greeting and a name in the prompt)."""
    return next(_known)


def _stranger() -> int:
    return next(_unknown)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


# ------------------------------------------------------------------------------ reading a call


class Wire:
    """What one simulated call recorded, in absolute monotonic seconds."""

    def __init__(self, call: SimulatedCall) -> None:
        self.call = call
        self.t0 = call.recording.t0
        self.timeline = call.recording.timeline

    def at(self, entry: dict[str, Any], key: str = "t") -> float:
        return self.t0 + float(entry[key])

    def first(self, kind: str, **match: Any) -> float | None:
        for e in self.timeline:
            if e["kind"] == kind and all(e.get(k) == v for k, v in match.items()):
                return self.at(e)
        return None

    def heard(self) -> list[tuple[float, float | None, str]]:
        """(start, end, via) of every heard segment (via: playback | stream)."""
        out = []
        for e in self.timeline:
            if e["kind"] == "audio":
                end = self.t0 + e["end"] if e.get("end") is not None else None
                out.append((self.t0 + e["start"], end, e.get("via", "")))
        return out

    def frames_in(self) -> list[float]:
        """Arrival times of binary frames from the controller (agent audio)."""
        return [self.at(e) for e in self.timeline
                if e["kind"] == "ws" and e.get("dir") == "S->C" and e.get("op") == "binary"]

    def texts_in(self, needle: str) -> list[float]:
        return [self.at(e) for e in self.timeline if e["kind"] == "ws" and e.get("dir") == "S->C"
                and e.get("op") == "text" and needle in (e.get("text") or "")]

    def commands(self, prefix: str) -> list[float]:
        return [self.at(e) for e in self.timeline if e["kind"] == "command" and e["text"].startswith(prefix)]

    def utterances(self) -> list[tuple[float, float | None]]:
        out = []
        for e in self.timeline:
            if e["kind"] == "caller" and e.get("what") == "utterance":
                out.append((self.t0 + e["start"], self.t0 + e["end"] if e.get("end") is not None else None))
        return out

    def hangup(self) -> dict[str, Any]:
        for e in self.timeline:
            if e["kind"] == "hangup":
                return {"cause": e.get("cause"), "by": e.get("by")}
        return {}

    def heard_after(self, t: float) -> float | None:
        return next((s for s, _e, _v in self.heard() if s >= t), None)

    def stream_ms_after(self, t: float) -> float:
        total = 0.0
        for s, e, via in self.heard():
            if via == "stream" and e is not None and s >= t:
                total += e - s
        return total * 1000.0


def _after(times: list[float], t: float) -> float | None:
    return next((x for x in sorted(times) if x >= t), None)


def _last_before(times: list[float], t: float) -> float | None:
    before = [x for x in times if x <= t]
    return max(before) if before else None


def _first_sentence_at(chunk_log: list[tuple[float, bytes]]) -> float | None:
    """When the LLM server sent the chunk that completed the first sentence (the splitter's view)."""
    splitter = SentenceSplitter()
    for t, data in chunk_log:
        if splitter.push(sse_text(data)):
            return t
    return chunk_log[-1][0] if chunk_log else None


def _place(sim: FreeSwitchSimulator, lab: Lab, index: int, did: str, script: CallerScript,
           number: str | None = None) -> tuple[SimulatedCall, int]:
    """Place a call and wait until its recognition stream opened; returns (call, stream index)."""
    before = len(lab.google.stt_times)
    call = sim.place_call(caller_number=number or contact_number(index), destination=did, script=script)
    deadline = time.monotonic() + 5.0
    while len(lab.google.stt_times) == before and time.monotonic() < deadline and not call.ended:
        gevent.sleep(0.002)
    return call, before


def _wait(calls: list[SimulatedCall], timeout: float) -> int:
    deadline = time.monotonic() + timeout
    done = 0
    for call in calls:
        if call.wait(max(0.0, deadline - time.monotonic())):
            done += 1
    return done


# ------------------------------------------------------------------------------ latency figures


_QUIET = np.zeros(800, dtype="<i2")  # 100 ms of silence: a script step that waits for the agent


def _latency_script(seed: int) -> CallerScript:
    return (CallerScript()
            .say(speech_like(1300, seed=seed), after_agent_silence_ms=400, label="question")
            .say(speech_like(1300, seed=seed + 1), after_agent_silence_ms=400, label="second")
            .say(speech_like(1300, seed=seed + 2), barge_in_ms=500, label="barge-in")
            .say(_QUIET, after_agent_silence_ms=500, max_wait_s=15.0, label="wait")
            .hangup(at=0.0))


def latency_and_drills(lab: Lab, calls_per_variant: int, debug: bool = False) -> dict[str, Any]:
    """The quick mode: the drills' calls are placed once the latency calls are (overlapping)."""
    placed = gevent.event.Event()
    job = gevent.spawn(latency, lab, calls_per_variant, debug=debug, placed=placed)
    placed.wait(60)
    drill_results = drills(lab)
    return {"latency": job.get(), "drills": drill_results}


def latency(lab: Lab, calls_per_variant: int, stagger_s: float = 0.35, timeout: float = 60.0,
            end_of_turn_ms: float = 300.0, debug: bool = False,
            placed: gevent.event.Event | None = None) -> dict[str, Any]:
    """Figures 1-4: greeting, controller overhead, streaming vs whole reply, barge-in."""
    sim = FreeSwitchSimulator(("127.0.0.1", lab.esl_port))
    calls: list[tuple[str, str, SimulatedCall, int]] = []
    for _i in range(calls_per_variant):
        for variant, did in (("optimised", OPTIMISED_DID), ("baseline", BASELINE_DID)):
            index = _index()
            call, stream = _place(sim, lab, index, did, _latency_script(index * 3))
            calls.append((variant, contact_name(index), call, stream))
            gevent.sleep(stagger_s)
    if placed is not None:
        placed.set()
    finished = _wait([c for _v, _n, c, _s in calls], timeout)
    results = [_analyse_latency(lab, v, n, c, s, end_of_turn_ms, debug) for v, n, c, s in calls]
    sim.shutdown()
    return {"calls": results, "finished": finished, "placed": len(calls)}


def _analyse_latency(lab: Lab, variant: str, name: str, call: SimulatedCall, stream: int,
                     end_of_turn_ms: float, debug: bool = False) -> dict[str, Any]:
    w = Wire(call)
    r: dict[str, Any] = {"variant": variant, "hangup": w.hangup()}
    answered = w.first("answered")
    heard = w.heard()
    frames = w.frames_in()
    if answered is None or not heard:
        r["error"] = "no answer or nothing heard"
        return r
    greeting_start, _end, via = heard[0]
    r["greeting_via"] = via
    r["answer_to_greeting_heard_ms"] = _ms(greeting_start - answered)
    playback = [w.at(e) for e in w.timeline if e["kind"] == "command" and "execute-app-name: playback" in e["text"]]
    started = w.first("event", name="PLAYBACK_START")
    if via == "playback" and playback:
        r["greeting_queued_vs_answer_ms"] = _ms(playback[0] - answered)  # negative: queued before
        if started is not None:
            r["answer_to_playback_start_ms"] = _ms(started - answered)
    if debug:
        r["greeting_timeline"] = [
            (_ms(w.at(e) - answered), {k: str(v)[:50] for k, v in e.items() if k != "t"})
            for e in w.timeline if answered - 0.03 <= w.at(e) <= greeting_start + 0.001]
    if via == "stream" and frames:
        r["answer_to_greeting_frame_in_ms"] = _ms(frames[0] - answered)
    events = lab.google.stt_times[stream].events if stream < len(lab.google.stt_times) else []
    finals = [t for t, _txt, final in events if final]
    interims = [t for t, _txt, final in events if not final]
    requests = sorted((q for q in lab.llm.requests if getattr(q, "caller", "") == name),
                      key=lambda q: q.received_at)
    first_req = next((q for q in requests if q.user_turns == 1), None)
    if not finals or first_req is None:
        r["error"] = "no final transcript or no LLM request"
        return r
    final = _last_before(finals, first_req.received_at)
    if final is None:
        r["error"] = "LLM request before any final transcript"
        return r
    r["name"] = name
    r["final_at"] = final
    r["llm_request_at"] = first_req.received_at
    r["final_to_llm_request_ms"] = _ms(first_req.received_at - final)
    r["final_to_llm_overhead_ms"] = _ms(first_req.received_at - final - end_of_turn_ms / 1000.0)
    texts = reply_texts(name)
    streams = sorted((s for s in lab.google.tts_streams if name in s.text and s.text_at is not None),
                     key=lambda s: s.received)
    if variant == "optimised":
        sentence_at = _first_sentence_at(first_req.chunk_log)
        tts = next((s for s in streams if s.received >= first_req.received_at), None)
        if sentence_at is not None and tts is not None:
            r["sentence_to_tts_request_ms"] = _ms(tts.received - sentence_at)
            r["sentence_to_tts_text_ms"] = _ms(tts.text_at - sentence_at)
    else:
        last_chunk = first_req.chunk_log[-1][0] if first_req.chunk_log else None
        tts = next((s for s in streams if s.received >= first_req.received_at and texts[0][:20] in s.text), None)
        if last_chunk is not None and tts is not None:
            r["reply_end_to_tts_request_ms"] = _ms(tts.received - last_chunk)
    if tts is not None and tts.first_chunk is not None:
        frame = _after(frames, tts.first_chunk)
        if frame is not None:
            r["tts_first_byte_to_frame_out_ms"] = _ms(frame - tts.first_chunk)
            r["final_to_reply_audio_frame_ms"] = _ms(frame - final)
    first_frame = _after(frames, final)
    if first_frame is not None:  # the filler, when the reply is late
        r["final_to_first_audio_frame_ms"] = _ms(first_frame - final)
    heard_reply = w.heard_after(final)
    if heard_reply is not None:
        r["final_to_first_audio_heard_ms"] = _ms(heard_reply - final)
    utterances = w.utterances()
    if variant == "optimised" and len(utterances) >= 3:
        r.update(_analyse_barge_in(lab, w, name, utterances[2][0], interims, requests))
    return r


def _analyse_barge_in(lab: Lab, w: Wire, name: str, barge_start: float, interims: list[float],
                      requests: list[Any]) -> dict[str, Any]:
    r: dict[str, Any] = {}
    kills = [t for t in w.texts_in("killAudio") if t >= barge_start]
    if kills:
        cause = _last_before(interims, kills[0])
        if cause is not None and cause >= barge_start:
            r["interim_to_kill_audio_ms"] = _ms(kills[0] - cause)
        breaks = [t for t in w.commands("api uuid_break") if t >= barge_start]
        if breaks and cause is not None and cause >= barge_start:
            r["interim_to_uuid_break_ms"] = _ms(breaks[0] - cause)
    second = next((q for q in requests if q.user_turns == 2), None)
    if second is None:
        return r
    if not second.client_closed_early or second.ended_at is None:
        r["barge_in_llm_already_done"] = True
        return r
    cause = _last_before(interims, second.ended_at)
    if cause is None or cause < barge_start:
        return r
    r["interim_to_llm_cancelled_ms"] = _ms(second.ended_at - cause)
    cancelled = [s for s in lab.google.tts_streams if name in s.text and s.cancelled and s.ended is not None
                 and second.received_at <= s.received <= second.ended_at and s.ended >= cause]
    if cancelled:
        r["interim_to_tts_cancelled_ms"] = _ms(max(s.ended for s in cancelled) - cause)
        r["tts_streams_cancelled"] = len(cancelled)
        r["tts_cancel_detail"] = [(_ms(s.received - cause), _ms(s.ended - cause), s.chunks, s.text[:30])
                                  for s in cancelled]
    return r


# ------------------------------------------------------------------------------ fault drills


def _ask_once(seed: int, question_ms: int) -> CallerScript:
    """Ask once after the greeting; hang up 300 ms into the reply."""
    return (CallerScript()
            .say(speech_like(question_ms, seed=seed), after_agent_silence_ms=400, label="question")
            .say(_QUIET, barge_in_ms=300, max_wait_s=20.0, label="wait")
            .hangup(at=0.0))


def _drill_script(seed: int, question_ms: int = 1300) -> CallerScript:
    """Ask once after the greeting; hang up once the agent has answered and been quiet 1 s."""
    return (CallerScript()
            .say(speech_like(question_ms, seed=seed), after_agent_silence_ms=400, label="question")
            .say(_QUIET, after_agent_silence_ms=1000, max_wait_s=15.0, label="wait")
            .hangup(at=0.0))


def drills(lab: Lab, timeout: float = 40.0) -> dict[str, Any]:
    """Provider and media faults, each on its own call, all at once (faults are per call)."""
    sim = FreeSwitchSimulator(("127.0.0.1", lab.esl_port))
    plan: dict[str, tuple[SimulatedCall, str, int]] = {}
    for drill in ("control", "stt_cut", "llm_timeout", "tts_failing", "fork_drop"):
        index = _index()
        name = contact_name(index)
        if drill == "llm_timeout":
            lab.llm.stall_names.add(name)
        elif drill == "tts_failing":
            lab.google.tts_fail_names.add(name)
        call, stream = _place(sim, lab, index, OPTIMISED_DID, _drill_script(index * 3))
        if drill == "stt_cut":
            lab.google.stt_cut_streams[stream] = 3  # abort the stream at its 3rd interim result
        elif drill == "fork_drop":
            gevent.spawn(_drop_fork_while_speaking, call)
        plan[drill] = (call, name, stream)
        gevent.sleep(0.2)
    _wait([c for c, _n, _s in plan.values()], timeout)
    out = {drill: _analyse_drill(lab, drill, call, name) for drill, (call, name, _s) in plan.items()}
    lab.llm.stall_names.clear()
    lab.google.tts_fail_names.clear()
    lab.google.stt_cut_streams.clear()
    sim.shutdown()
    return out


def _drop_fork_while_speaking(call: SimulatedCall) -> None:
    """Cut the fork's TCP connection 300 ms into the agent's first streamed reply."""
    w = Wire(call)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not call.ended:
        if any(via == "stream" for _s, _e, via in w.heard()):
            gevent.sleep(0.3)
            for fork in list(call.forks.values()):
                sock = fork._sock
                if sock is not None:
                    call.record("bench_fault", what="fork TCP dropped")
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
            return
        gevent.sleep(0.01)


def _analyse_drill(lab: Lab, drill: str, call: SimulatedCall, name: str) -> dict[str, Any]:
    w = Wire(call)
    r: dict[str, Any] = {"hangup": w.hangup()}
    utterances = w.utterances()
    if not utterances or utterances[0][1] is None:
        r["error"] = "the caller never finished the question"
        return r
    said_end = utterances[0][1]
    first_heard = w.heard_after(said_end)
    r["silence_after_question_ms"] = _ms(first_heard - said_end) if first_heard else None
    texts = reply_texts(name)
    expected_ms = len(texts[0]) * lab.google.tts.ms_per_char
    heard_ms = w.stream_ms_after(said_end)
    r["reply_heard_ms"] = round(heard_ms, 1)
    r["reply_expected_ms"] = round(expected_ms, 1)
    primary = [q for q in lab.llm.requests if getattr(q, "caller", "") == name]
    secondary = [q for q in lab.llm2.requests if getattr(q, "caller", "") == name]
    user_texts = [(q.body.get("messages") or [{}])[-1].get("content", "") for q in primary + secondary]
    r["transcript_complete"] = any(t == CALLER_TEXT for t in user_texts)
    if drill == "stt_cut":
        r["stream_cut"] = any(s.cut for s in lab.google.stt_times)
    elif drill == "llm_timeout":
        if primary and secondary:
            r["failover_after_ms"] = _ms(secondary[0].received_at - primary[0].received_at)
    elif drill == "tts_failing":
        failed = [s for s in lab.google.tts_streams if name in s.text and s.failed]
        r["tts_requests_failed"] = len(failed)
        r["apology_heard"] = heard_ms > 0
    elif drill == "fork_drop":
        dropped = w.first("bench_fault")
        upgrades = [w.at(e) for e in w.timeline if e["kind"] == "ws" and e.get("what") == "upgrade"]
        if dropped is not None:
            again = _after(upgrades, dropped)
            r["fork_reconnected_after_ms"] = _ms(again - dropped) if again else None
            resumed = w.heard_after(dropped)
            r["silence_after_drop_ms"] = _ms(resumed - dropped) if resumed else None
            r["caller_audio_lost_ms"] = r["fork_reconnected_after_ms"]
    r["reply_lost_ms"] = round(max(0.0, expected_ms - heard_ms), 1)
    return r


def burst(lab: Lab, controller_pid: int, calls: int = 100, over_s: float = 1.0,
          timeout: float = 60.0) -> dict[str, Any]:
    """`calls` calls arriving within `over_s` seconds; each greets, asks once, hears the reply."""
    sim = FreeSwitchSimulator(("127.0.0.1", lab.esl_port))
    cpu0, own0, t0 = _proc(controller_pid)[0], time.process_time(), time.monotonic()
    placed = []
    start = time.monotonic()
    for i in range(calls):
        index = _stranger()
        script = _ask_once(i, 1000)
        placed.append(sim.place_call(caller_number=contact_number(index), destination=OPTIMISED_DID,
                                     script=script))
        gevent.sleep(max(0.0, start + (i + 1) * over_s / calls - time.monotonic()))
    arrival_s = time.monotonic() - start
    finished = _wait(placed, timeout)
    elapsed = time.monotonic() - t0
    cpu = {"controller_cpu_pct": round((_proc(controller_pid)[0] - cpu0) / elapsed * 100, 1),
           "loadgen_cpu_pct": round((time.process_time() - own0) / elapsed * 100, 1)}
    rows = []
    for call in placed:
        w = Wire(call)
        connect = w.first("tcp_connect")
        answered = w.first("answered")
        heard = w.heard()
        row: dict[str, Any] = {"hangup": w.hangup()}
        if connect is not None and answered is not None:
            row["connect_to_answer_ms"] = _ms(answered - connect)
        if answered is not None and heard:
            row["answer_to_greeting_heard_ms"] = _ms(heard[0][0] - answered)
        utterances = w.utterances()
        if utterances and utterances[0][1] is not None:
            reply = w.heard_after(utterances[0][1])
            row["silence_after_question_ms"] = _ms(reply - utterances[0][1]) if reply else None
        rows.append(row)
    sim.shutdown()
    return {"calls": rows, "finished": finished, "arrival_s": round(arrival_s, 3), **cpu}


# ------------------------------------------------------------------------------ controller restart


def restart_prepare(lab: Lab, calls: int = 3, mid_reply: bool = True) -> dict[str, Any]:
    """Calls up before the controller is killed: the agent mid-reply, or (quick) just greeted."""
    sim = FreeSwitchSimulator(("127.0.0.1", lab.esl_port))
    placed = []
    for _ in range(calls):
        index = _index()
        script = CallerScript().say(speech_like(1300, seed=index), after_agent_silence_ms=300).hangup(at=60)
        placed.append(sim.place_call(caller_number=contact_number(index), destination=OPTIMISED_DID,
                                     script=script))
        gevent.sleep(0.1)
    deadline = time.monotonic() + 15
    want = 2 if mid_reply else 1  # heard segments: the greeting, then the reply
    while time.monotonic() < deadline:
        if all(len(Wire(c).heard()) >= want for c in placed):
            break
        gevent.sleep(0.05)
    lab.restart = (sim, placed)
    return {"calls_up": sum(1 for c in placed if not c.ended)}


def restart_observe(lab: Lab, killed_at: float, timeout: float = 10.0) -> dict[str, Any]:
    sim, placed = lab.restart
    _wait(placed, timeout)
    rows = []
    for call in placed:
        w = Wire(call)
        closed = w.first("esl_closed")
        last_audio = max((e for _s, e, _v in w.heard() if e is not None and e <= killed_at + 0.05),
                         default=killed_at)
        rows.append({
            "socket_app_returned_after_kill_ms": _ms(closed - killed_at) if closed else None,
            "silence_until_dialplan_fallback_ms": _ms(closed - min(last_audio, killed_at)) if closed else None,
            "hangup": w.hangup(),
        })
    sim.shutdown()
    return {"calls": rows}


def restart_recovered(lab: Lab, killed_at: float) -> dict[str, Any]:
    """A new call after the restart: served again?"""
    sim = FreeSwitchSimulator(("127.0.0.1", lab.esl_port))
    index = _index()
    call = sim.place_call(caller_number=contact_number(index), destination=OPTIMISED_DID,
                          script=CallerScript().hangup(at=2.0))
    call.wait(10)
    w = Wire(call)
    heard = w.heard()
    sim.shutdown()
    return {"new_call_greeted": bool(heard),
            "kill_to_new_call_greeted_ms": _ms(heard[0][0] - killed_at) if heard else None}


# ------------------------------------------------------------------------------ scale and soak


def _proc(pid: int) -> tuple[float, float]:
    """(cpu seconds, rss MB) of a process from /proc."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss_kb = 0
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
    return cpu, rss_kb / 1024.0


def scale_step(lab: Lab, calls: int, window_s: float, controller_pid: int, idle_rss_mb: float,
               arrival_per_s: float = 150.0, period_s: float = 6.0) -> dict[str, Any]:
    """N calls in one controller, each talking every `period_s`; measure one window."""
    marks = install_mark_probe()
    lab.google.mark_chunks = True
    sim = LightSim(("127.0.0.1", lab.esl_port), period_s=period_s)
    start = time.monotonic()
    placed = []
    for i in range(calls):
        placed.append(sim.place_call(caller_number=contact_number(_stranger()),
                                     destination=OPTIMISED_DID, script=CallerScript()))
        gevent.sleep(max(0.0, start + (i + 1) / arrival_per_s - time.monotonic()))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and sum(1 for c in placed if c.forks) < calls:
        gevent.sleep(0.05)
    forks_up = sum(1 for c in placed if c.forks)
    gevent.sleep(3.0)  # greetings and first turns settle
    marks.clear()
    sim.ticker.reset_stats()
    llm_before = len(lab.llm.requests)
    cpu0, _rss0 = _proc(controller_pid)
    own0 = time.process_time()
    t0 = time.monotonic()
    gevent.sleep(window_s)
    elapsed = time.monotonic() - t0
    cpu1, rss1 = _proc(controller_pid)
    own1 = time.process_time()
    window_marks = list(marks)
    replies = len(lab.llm.requests) - llm_before
    alive = sum(1 for c in placed if not c.ended)
    late = sim.ticker.lateness()
    sim.shutdown()
    lab.google.mark_chunks = False
    marks.clear()
    # Forwarding delay of each agent-audio frame: arrival at FreeSWITCH minus the moment the
    # controller could first send it (the TTS server sent it, or the previous frame of the call
    # arrived: a sentence's audio waits for the previous sentence, by design).
    per_call: dict[str, list[tuple[float, float]]] = {}
    for arrived, uuid, chunk_id in window_marks:
        sent = lab.google.chunk_sent.get(chunk_id)
        if sent is not None:
            per_call.setdefault(uuid, []).append((arrived, sent))
    delays: dict[str, list[float]] = {}
    for uuid, frames in per_call.items():
        frames.sort()
        previous = None
        for arrived, sent in frames:
            ready = sent if previous is None else max(sent, previous)
            delays.setdefault(uuid, []).append(arrived - ready)
            previous = arrived
    jitter = [d - min(ds) for ds in delays.values() for d in ds]
    all_transit = [d for ds in delays.values() for d in ds]
    raw = [(chunk_id, lab.google.chunk_sent.get(chunk_id), arrived, uuid) for arrived, uuid, chunk_id in window_marks]
    lab.google.chunk_sent.clear()
    cpu = (cpu1 - cpu0) / elapsed
    gevent.sleep(2.0)  # let the controller clean the calls up
    return {
        "calls": calls, "forks_up": forks_up, "alive_at_end": alive, "window_s": round(elapsed, 2),
        "controller_cpu_pct": round(cpu * 100, 1),
        "cpu_pct_per_call": round(cpu * 100 / calls, 3),
        "rss_mb": round(rss1, 1), "rss_mb_per_call": round((rss1 - idle_rss_mb) / calls, 3),
        "replies_in_window": replies, "frames_out_measured": len(jitter),
        "jitter_p50_ms": _pct(jitter, 50), "jitter_p99_ms": _pct(jitter, 99),
        "jitter_max_ms": _ms(max(jitter)) if jitter else None,
        "transit_p50_ms": _pct(all_transit, 50), "transit_p99_ms": _pct(all_transit, 99),
        "loadgen_cpu_pct": round((own1 - own0) / elapsed * 100, 1),
        "loadgen_tick_late_p99_ms": late, "raw_frames": raw,
    }


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)) * 1000.0, 3) if values else None


def _forget_finished(lab: Lab) -> None:
    """The loopback servers keep every request: drop what finished (a long soak is thousands)."""
    for record in lab.google.stt_streams:
        if record.done.is_set() and record.audio:
            record.audio = bytearray()
    for server in (lab.llm, lab.llm2):
        server.requests[:] = [r for r in server.requests if not r.done.is_set()]


def soak(lab: Lab, duration_s: float, concurrent: int, controller_pid: int,
         sample_every_s: float = 1.0) -> dict[str, Any]:
    """Calls in a loop for `duration_s` (`concurrent` at a time); controller RSS sampled."""
    sim = FreeSwitchSimulator(("127.0.0.1", lab.esl_port))
    samples: list[tuple[float, float]] = []
    finished: list[SimulatedCall] = []
    live: list[SimulatedCall] = []
    start = time.monotonic()
    rng = random.Random(7)
    next_sample = start
    outcomes: dict[str, int] = {}

    def retire(call: SimulatedCall) -> None:
        by = str(Wire(call).hangup().get("by"))
        outcomes[by] = outcomes.get(by, 0) + 1
        if call in sim.calls:  # the simulator keeps every call's recording: drop it
            sim.calls.remove(call)
        call.recording.timeline.clear()
        call.recording._chunks.clear()

    while time.monotonic() - start < duration_s:
        for call in [c for c in live if c.ended]:
            live.remove(call)
            finished.append(call)
            retire(call)
        while len(live) < concurrent:
            index = _stranger()
            script = (CallerScript()
                      .say(speech_like(1000, seed=rng.randrange(1000)), after_agent_silence_ms=300)
                      .say(_QUIET, after_agent_silence_ms=500, max_wait_s=15.0)
                      .hangup(at=0.0))
            live.append(sim.place_call(caller_number=contact_number(index), destination=OPTIMISED_DID,
                                       script=script))
            gevent.sleep(0.05)
        if time.monotonic() >= next_sample:
            samples.append((round(time.monotonic() - start, 2), round(_proc(controller_pid)[1], 2)))
            next_sample += sample_every_s
            if len(samples) % 10 == 0:
                _forget_finished(lab)
        gevent.sleep(0.1)
    sim.shutdown()  # hang up whatever is still talking: the samples are what counts
    _wait(live, 10)
    for call in live:
        finished.append(call)
        retire(call)
    return {"samples": samples, "calls": len(finished), "ended_by": outcomes,
            "duration_s": round(time.monotonic() - start, 1)}


def probe(lab: Lab, wait_s: float = 3.0) -> dict[str, Any]:
    """One call for `wait_s` seconds; its first timeline entries (debugging the harness)."""
    sim = FreeSwitchSimulator(("127.0.0.1", lab.esl_port))
    call = sim.place_call(caller_number=contact_number(_index()), destination=OPTIMISED_DID,
                          script=CallerScript().hangup(at=wait_s))
    call.wait(wait_s + 5)
    timeline = [{k: str(v)[:80] for k, v in e.items()} for e in call.recording.timeline[:40]]
    sim.shutdown()
    return {"timeline": timeline}


def warm_up(lab: Lab) -> dict[str, Any]:
    """One unmeasured call with a reply: the controller's first-request costs (the OpenAI SDK's
    lazy imports and its `uname -p` subprocess, gRPC channel set-up) are paid before measuring."""
    sim = FreeSwitchSimulator(("127.0.0.1", lab.esl_port))
    call = sim.place_call(caller_number=contact_number(_index()), destination=OPTIMISED_DID,
                          script=_ask_once(1, 800))
    call.wait(20)
    heard = len(Wire(call).heard())
    sim.shutdown()
    return {"heard_segments": heard}
