"""`make demo`: one whole call through the real controller and the FreeSWITCH simulator, offline.

The controller runs with the offline engines (Whisper base STT, piper TTS) and the scripted LLM;
the simulator plays FreeSWITCH and a caller (Markus, known by caller ID) whose voice is
synthesised from text. Prints what happened, and writes the caller's ear (WAV) and the wire
timeline (JSON) to the output folder.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import gevent
import numpy as np

from esl_agent import config, logs
from esl_agent.app import Controller
from esl_agent.assembly import build_agent
from esl_agent.ops.call_records import CallRecords
from esl_agent.providers.base import NoTurn
from esl_agent.sim.caller import CallerScript
from esl_agent.sim.freeswitch import FreeSwitchSimulator

ROOT = Path(__file__).resolve().parent.parent
CALLER = "+436641234567"  # Markus in conf/contacts.example.yaml ("0664 1234567")
DID = "+43720123456"


def demo_settings(out: Path, fork_mode: str) -> config.Settings:
    var = out / "var"
    return config.from_mapping({
        "server": {"esl_listen": "127.0.0.1:0", "fork_listen": "127.0.0.1:0", "http_listen": "127.0.0.1:0"},
        "fork": {"mode": fork_mode},
        "calls": {"audio_dir": str(var / "audio")},
        "stt": {"provider": "offline", "offline": {"hotwords": "Markus, Anna Berger", "beam_size": 5}},
        "llm": {"chain": ["scripted"]},
        "tts": {"provider": "offline"},
        "greetings": {"cache_dir": str(var / "greetings"), "warm_on_start": True},
        "contacts": {"path": str(ROOT / "conf" / "contacts.example.yaml")},
        "policy": {"path": str(ROOT / "conf" / "policy.yaml"), "audit_log": str(var / "audit.log")},
        "ops": {"log_level": "WARNING", "call_records": str(var / "calls.sqlite"),
                "cost_per_minute": {"stt": 0.016, "tts": 0.004, "llm": 0.002}},
    }, source="<demo>", env={})


def run_demo(out: Path, *, short: bool = False, fork_mode: str = "stream") -> int:
    """Run the demo call; returns 0 when the call was answered, greeted and ended cleanly."""
    out.mkdir(parents=True, exist_ok=True)
    settings = demo_settings(out, fork_mode)
    logs.setup(settings.ops.log_level)
    t0 = time.monotonic()
    print("esl-agent demo: loading offline engines (Whisper base, piper joe) ...", flush=True)
    agent = build_agent(settings, start_warmer=False)
    report = agent.greetings.warm()
    print(f"  greetings pre-rendered: {len(report.rendered)} new, {report.present} already cached "
          f"({time.monotonic() - t0:.1f} s)", flush=True)
    conversations: list[Any] = []

    def factory(call):
        conversation = agent.conversation(call)
        conversations.append(conversation)
        return conversation

    controller = Controller(settings, factory, **agent.controller_options())
    controller.start()
    sim = FreeSwitchSimulator(("127.0.0.1", controller.esl_port), fork_mode=fork_mode)

    def voice(text: str, rate: int) -> np.ndarray:
        pcm = b"".join(agent.tts.synthesize(text, NoTurn()))
        return np.frombuffer(pcm, dtype="<i2")

    script = CallerScript(synthesize=voice)
    if short:
        script.say(text="Please put me through to Anna Berger.", after_agent_silence_ms=700)
    else:
        script.say(text="What are your opening hours?", after_agent_silence_ms=700)
        # ... and talks over the answer (a barge-in) half a second after the agent starts it
        script.say(text="Sorry, one more thing. Please put me through to Anna Berger.", barge_in_ms=500)
    script.hangup(after_agent_silence_s=8.0)
    print(f"  calling {DID} from {CALLER} (fork mode {fork_mode}) ...", flush=True)
    call = sim.place_call(caller_number=CALLER, caller_name="Markus", destination=DID, script=script)
    finished = call.wait(timeout=120)
    gevent.sleep(0.2)
    wav, timeline_path = out / f"{call.uuid}.wav", out / f"{call.uuid}.json"
    call.save(wav, timeline_path)
    controller.shutdown(drain_seconds=2)
    sim.shutdown()
    return _report(call, conversations, finished, wav, timeline_path, settings)


def _report(call, conversations, finished: bool, wav: Path, timeline_path: Path, settings) -> int:
    rec = call.recording
    answered = next((e["t"] for e in rec.timeline if e["kind"] == "answered"), None)
    print()
    print(f"call {call.uuid}")
    print(f"  answered           {_t(answered)}")
    segments = rec.heard_segments()
    for seg in segments:
        what = Path(seg["source"]).name if seg["source"] != "stream" else "streamed speech"
        cut = " (interrupted)" if seg.get("interrupted") else ""
        print(f"  caller heard       {_t(seg['start'])} - {_t(seg['end'])}  {what}{cut}")
    greeting = next((s for s in segments if "greetings" in str(s["source"])), None)
    if greeting and answered is not None:
        print(f"  greeting latency   {1000 * (greeting['start'] - answered):.0f} ms after answer (pre-rendered file)")
    for conversation in conversations:
        for line in _dialogue(conversation):
            print("  " + line)
    transfer = next((e for e in rec.timeline if e["kind"] == "transfer"), None)
    if transfer:
        print(f"  transferred        {_t(transfer['t'])} to {transfer.get('destination', '?')}")
    print(f"  hangup             {call.hangup_cause or '-'}")
    record = CallRecords(settings.ops.call_records).get(call.uuid)
    if record is not None:
        for turn in record["turns"]:
            print(f"  turn {turn['turn']} latency     " + _latency(turn))
        usage = record["usage"]
        print(f"  usage              {usage.get('stt_seconds', 0):.1f} s audio to STT, {usage.get('tokens_out', 0)} "
              f"LLM tokens out, {usage.get('tts_chars', 0)} characters to TTS")
        print(f"  cost               {record['cost']:.4f} {record['currency']} ({record['cost_per_minute']:.4f}/min)")
    print(f"  caller's ear       {wav}")
    print(f"  wire timeline      {timeline_path}")
    ok = finished and answered is not None and greeting is not None and bool(call.hangup_cause)
    print("demo: OK" if ok else "demo: FAILED (see the timeline)")
    return 0 if ok else 1


def _dialogue(conversation) -> list[str]:
    history = getattr(conversation, "history", None)
    messages = history.messages() if history is not None else []
    lines = []
    for m in messages:
        if m.role == "user" and m.content:
            lines.append(f"caller said        \"{m.content}\"")
        elif m.role == "assistant" and m.content:
            lines.append(f"agent said         \"{m.content}\"")
        for tool in getattr(m, "tool_calls", ()):
            lines.append(f"agent tool call    {tool.name}({json.dumps(tool.arguments)})")
    return lines


def _latency(turn: dict) -> str:
    parts = [f"{label} {turn[key]:.0f} ms" for key, label in (
        ("llm_first_token_ms", "first token"), ("tts_first_byte_ms", "first TTS audio"),
        ("first_audio_ms", "first audio out")) if turn.get(key) is not None]
    if turn.get("interrupted_ms") is not None:
        parts.append(f"barge-in at {turn['interrupted_ms']:.0f} ms")
    return ", ".join(parts) + " after the end of the caller's turn" if parts else "-"


def _t(value: float | None) -> str:
    return "-" if value is None else f"{value:6.2f} s"
