"""`esl-agent simulate`: place simulated FreeSWITCH calls against a running controller."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from esl_agent.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="place simulated FreeSWITCH calls (outbound ESL + audio fork) against a controller",
        description="Plays FreeSWITCH's side of the outbound event socket and mod_audio_fork's "
                    "side of the WebSocket; writes what each caller heard (WAV) and a JSON "
                    "timeline per call.",
    )
    p.add_argument("--esl", default="127.0.0.1:8084", help="controller's ESL address host:port")
    p.add_argument("--caller", default="+4366412345", help="caller ID number")
    p.add_argument("--caller-name", default="", help="caller ID name")
    p.add_argument("--destination", default="+43720123456", help="dialled number")
    p.add_argument("--say", action="append", default=[], metavar="WAV",
                   help="an utterance (16-bit WAV), said after the agent stops talking; repeat "
                        "for several turns")
    p.add_argument("--pause-ms", type=int, default=700,
                   help="agent silence before the caller speaks (default 700)")
    p.add_argument("--hangup-after-silence", type=float, default=3.0,
                   help="after the last utterance, hang up once the agent is silent this long")
    p.add_argument("--calls", type=int, default=1, help="number of simultaneous calls")
    p.add_argument("--frame-ms", type=int, default=20, help="caller packetisation (20 or 30)")
    p.add_argument("--fork-mode", choices=["stream", "play_audio"], default="stream",
                   help="jambonz streaming module or drachtio playAudio module")
    p.add_argument("--timeout", type=float, default=120.0, help="give up after this many seconds")
    p.add_argument("--out", default="sim-out", help="directory for <uuid>.wav / <uuid>.json")
    p.set_defaults(func=_simulate)


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ConfigError(f"--esl: expected host:port, got {text!r}")
    return host, int(port)


def _simulate(args: argparse.Namespace) -> int:
    from esl_agent import runtime

    runtime.init()
    from esl_agent.sim.caller import CallerScript, Hangup, Utterance, load_wav
    from esl_agent.sim.freeswitch import FreeSwitchSimulator

    esl = _address(args.esl)
    if args.calls < 1:
        raise ConfigError("--calls must be at least 1")
    utterances = []
    for path in args.say:
        if not Path(path).is_file():
            raise ConfigError(f"--say: no such file: {path}")
        try:
            utterances.append(load_wav(path))
        except Exception as exc:
            raise ConfigError(f"--say {path}: {exc}") from exc

    def script(_: int) -> CallerScript:
        steps: list = [Utterance(audio=u, after_agent_silence_ms=args.pause_ms, label=Path(p).name)
                       for u, p in zip(utterances, args.say)]
        steps.append(Hangup(after_agent_silence_s=args.hangup_after_silence))
        return CallerScript(steps=steps)

    sim = FreeSwitchSimulator(esl, fork_mode=args.fork_mode, frame_ms=args.frame_ms,
                              linger_behaviour=5.0)
    calls = sim.run_calls(args.calls, script_factory=script, caller_number=args.caller,
                          caller_name=args.caller_name, destination=args.destination)
    finished = sim.wait_all(args.timeout)
    if not finished:
        sim.shutdown()
    out = Path(args.out)
    ok = 0
    for call in calls:
        call.save(out / f"{call.uuid}.wav", out / f"{call.uuid}.json")
        rec = call.recording
        hangups = rec.entries("hangup")
        cause = hangups[0]["cause"] if hangups else "-"
        segs = rec.heard_segments()
        first = rec.first_audio_time()
        errors = rec.entries("socket_error")
        if not errors and hangups:
            ok += 1
        summary = {
            "uuid": call.uuid,
            "seconds": round(rec.audio_seconds, 2),
            "answered": bool(rec.entries("answered")),
            "first_audio_s": first,
            "heard_segments": len(segs),
            "interrupted": sum(1 for s in segs if s["interrupted"]),
            "commands": len(call.commands),
            "hangup": cause,
            "transfer": (rec.entries("transfer") or [{}])[0].get("destination"),
        }
        if errors:
            summary["error"] = errors[0]["error"]
        print(json.dumps(summary))
    print(f"{ok}/{len(calls)} calls completed; recordings in {out}/", file=sys.stderr)
    return 0 if ok == len(calls) and finished else 1
