"""The caller script, the recording, many calls at once and the `simulate` command."""

from __future__ import annotations

import json
import time
import wave
from pathlib import Path

import gevent
import numpy as np
import pytest

from esl_agent.cli import main
from esl_agent.sim.caller import CallerScript, Dtmf, Hangup, Utterance, speech_like, tone
from esl_agent.sim.esl_codec import parse_event_plain
from esl_agent.sim.freeswitch import FreeSwitchSimulator
from tests.sim.harness import EslConn, FakeEsl, FakeForkServer, event_headers

pytestmark = pytest.mark.wire

PLAY = "sendmsg\ncall-command: execute\nexecute-app-name: playback\nexecute-app-arg: {}"


def _until(pred, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not met"
        gevent.sleep(0.005)


def _control(conn: EslConn, *, fork_url: str | None = None, uuid: str = "",
             stream: bool = False) -> None:
    """What a minimal controller does: connect, events, answer, optional fork."""
    conn.command("connect")
    conn.command("myevents")
    conn.command("event plain PLAYBACK_START PLAYBACK_STOP CUSTOM mod_audio_fork::connect")
    conn.command("sendmsg\ncall-command: execute\nexecute-app-name: answer")
    conn.wait_event("CHANNEL_ANSWER")
    if fork_url:
        extra = f' audio_fork {{"uuid":"{uuid}"}} true true 8000' if stream else ""
        assert conn.api(f"uuid_audio_fork {uuid} start {fork_url}/{uuid} mono 8k{extra}") == (
            "+OK Success\n")
        conn.wait_event("mod_audio_fork::connect")


def test_caller_waits_for_agent_silence_then_speaks(fake_esl: FakeEsl) -> None:
    script = CallerScript().say(speech_like(200), after_agent_silence_ms=200, label="hello")
    sim = FreeSwitchSimulator(fake_esl.address)
    call = sim.place_call(script=script)
    conn = fake_esl.accept()
    _control(conn)
    conn.command(PLAY.format("tone_stream://%(300,0,440)"))
    _until(lambda: call.recording.entries("caller")
           and call.recording.entries("caller")[0]["end"] is not None)
    seg = call.recording.heard_segments()[0]
    utt = call.recording.entries("caller")[0]
    assert utt["label"] == "hello"
    assert utt["start"] >= seg["end"] + 0.2 - 0.021
    sim.shutdown()


def test_barge_in_starts_during_the_agent_reply(fake_esl: FakeEsl) -> None:
    script = CallerScript(steps=[Utterance(audio=speech_like(200), barge_in_ms=300)])
    sim = FreeSwitchSimulator(fake_esl.address)
    call = sim.place_call(script=script)
    conn = fake_esl.accept()
    _control(conn)
    conn.command(PLAY.format("tone_stream://%(2000,0,440)"))
    _until(lambda: call.recording.entries("caller"))
    utt = call.recording.entries("caller")[0]
    seg = call.recording.heard_segments()[0]
    assert seg["start"] + 0.3 - 0.021 <= utt["start"] < seg["start"] + 2.0
    assert seg["end"] is None  # the agent is still talking when the caller starts
    sim.shutdown()


def test_dtmf_and_caller_hangup_after_agent_silence(fake_esl: FakeEsl) -> None:
    script = CallerScript(steps=[Dtmf("1#", at=0.05, gap_s=0.05),
                                 Hangup(after_agent_silence_s=0.2)])
    sim = FreeSwitchSimulator(fake_esl.address)
    call = sim.place_call(script=script)
    conn = fake_esl.accept()
    _control(conn)
    conn.wait_event("CHANNEL_HANGUP_COMPLETE")
    dtmf = [f for f in conn.events if event_headers(f).get("Event-Name") == "DTMF"]
    assert [event_headers(f)["DTMF-Digit"] for f in dtmf] == ["1", "#"]
    raw_headers, _ = parse_event_plain(dtmf[1].body)
    assert ("DTMF-Digit", "%23") in raw_headers
    h = event_headers(dtmf[0])
    assert (h["DTMF-Duration"], h["DTMF-Source"]) == ("2000", "RTP")
    assert not any(k.startswith("variable_") for k in h)
    hangup = conn.wait_event("CHANNEL_HANGUP")
    assert event_headers(hangup)["Hangup-Cause"] == "NORMAL_CLEARING"
    assert call.wait(5)


def test_caller_gives_up_while_ringing(fake_esl: FakeEsl) -> None:
    sim = FreeSwitchSimulator(fake_esl.address)
    call = sim.place_call(script=CallerScript(hangup_before_answer_s=0.1))
    conn = fake_esl.accept()
    conn.command("connect")
    conn.command("myevents")
    ev = conn.wait_event("CHANNEL_HANGUP")
    assert event_headers(ev)["Hangup-Cause"] == "ORIGINATOR_CANCEL"
    assert event_headers(conn.wait_event("CHANNEL_HANGUP_COMPLETE"))[
        "variable_hangup_cause_q850"] == "487"
    assert call.wait(5)


def test_recording_wav_and_json(fake_esl: FakeEsl, tmp_path: Path) -> None:
    sim = FreeSwitchSimulator(fake_esl.address)
    call = sim.place_call()
    conn = fake_esl.accept()
    _control(conn)
    wav_file = tmp_path / "greeting.wav"
    greeting = tone(880, 400)
    with wave.open(str(wav_file), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(greeting.tobytes())
    conn.command(PLAY.format(wav_file))
    conn.wait_event("PLAYBACK_STOP")
    conn.command("sendmsg\ncall-command: execute\nexecute-app-name: hangup")
    assert call.wait(5)
    call.save(tmp_path / "out.wav", tmp_path / "out.json")
    doc = json.loads((tmp_path / "out.json").read_text())
    kinds = {e["kind"] for e in doc["timeline"]}
    assert {"command", "event", "audio", "hangup", "answered"} <= kinds
    seg = next(e for e in doc["timeline"] if e["kind"] == "audio")
    assert seg["source"] == str(wav_file) and seg["interrupted"] is False
    assert doc["first_audio_time"] == seg["start"] == call.recording.first_audio_time()
    with wave.open(str(tmp_path / "out.wav"), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    start = round(seg["start"] * 8000)
    assert not pcm[: start - 1].any()  # silence before the greeting
    heard = pcm[start:start + greeting.size]
    assert np.array_equal(heard, greeting)  # the file, sample for sample, at its time
    assert not pcm[start + greeting.size:].any()


def test_streamed_audio_needs_send_silence_when_idle(fake_esl: FakeEsl,
                                                     fork_server: FakeForkServer) -> None:
    sim = FreeSwitchSimulator(fake_esl.address, send_silence_when_idle=False)
    call = sim.place_call()
    conn = fake_esl.accept()
    conn.command("connect")
    conn.command("myevents")
    conn.command("event plain CUSTOM mod_audio_fork::connect")
    conn.command("sendmsg\ncall-command: execute\nexecute-app-name: answer")
    conn.wait_event("CHANNEL_ANSWER")
    conn.api(f"uuid_audio_fork {call.uuid} start {fork_server.url} mono 8k '' '' true true 8000")
    ws = fork_server.wait_conn()
    conn.wait_event("mod_audio_fork::connect")
    ws.send_binary(tone(440, 300).tobytes())
    _until(lambda: call.recording.entries("note"))
    assert call.recording.heard_segments() == []
    assert "send_silence_when_idle" in call.recording.entries("note")[0]["what"]
    sim.shutdown()


def test_many_calls_do_not_cross(fake_esl: FakeEsl, fork_server: FakeForkServer) -> None:
    sim = FreeSwitchSimulator(fake_esl.address, fork_mode="stream")
    calls = sim.run_calls(10)
    conns = [fake_esl.accept() for _ in calls]
    by_uuid = {}
    for conn in conns:
        reply = conn.command("connect")
        uuid = dict(reply.headers)["Unique-ID"]
        by_uuid[uuid] = conn
    assert set(by_uuid) == {c.uuid for c in calls}
    jobs = [gevent.spawn(_control, conn, fork_url=fork_server.url, uuid=uuid, stream=True)
            for uuid, conn in by_uuid.items()]
    gevent.joinall(jobs, raise_error=True, timeout=10)
    fork_server.wait_conn(10)
    paths = {ws.request.split(b" ")[1].decode().strip("/") for ws in fork_server.conns}
    assert paths == set(by_uuid)
    # each call's own audio goes back on its own WebSocket and is heard only on that call
    freq = {}
    for i, ws in enumerate(fork_server.conns):
        uuid = ws.request.split(b" ")[1].decode().strip("/")
        freq[uuid] = 300 + 100 * i
        ws.send_binary(tone(freq[uuid], 400).tobytes())
    for call in calls:
        _until(lambda c=call: c.recording.heard_segments()
               and c.recording.heard_segments()[0]["end"] is not None)
        pcm = call.recording.samples().astype(float)
        peak = np.argmax(np.abs(np.fft.rfft(pcm))) * 8000 / pcm.size
        assert abs(peak - freq[call.uuid]) < 10
    for conn in by_uuid.values():
        for f in conn.events:
            assert event_headers(f)["Unique-ID"] in by_uuid
            assert by_uuid[event_headers(f)["Unique-ID"]] is conn
    sim.shutdown()


def test_simulate_command_against_a_controller(fake_esl: FakeEsl, tmp_path: Path,
                                               capsys) -> None:
    say = tmp_path / "caller.wav"
    with wave.open(str(say), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(speech_like(300, 16000).tobytes())

    def controller() -> None:
        conn = fake_esl.accept()
        _control(conn)
        conn.command(PLAY.format("tone_stream://%(200,0,440)"))
        conn.wait_event("PLAYBACK_STOP")
        conn.wait_event("CHANNEL_HANGUP_COMPLETE", timeout=10)

    g = gevent.spawn(controller)
    host, port = fake_esl.address
    rc = main(["simulate", "--esl", f"{host}:{port}", "--say", str(say), "--pause-ms", "100",
               "--hangup-after-silence", "0.3", "--out", str(tmp_path / "out"),
               "--timeout", "20"])
    g.get(timeout=5)
    assert rc == 0
    lines = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert len(lines) == 1 and lines[0]["answered"] and lines[0]["hangup"] == "NORMAL_CLEARING"
    assert lines[0]["heard_segments"] == 1
    uuid = lines[0]["uuid"]
    assert (tmp_path / "out" / f"{uuid}.wav").is_file()
    doc = json.loads((tmp_path / "out" / f"{uuid}.json").read_text())
    assert any(e["kind"] == "caller" and e["what"] == "utterance" for e in doc["timeline"])


def test_simulate_command_rejects_bad_address(capsys) -> None:
    assert main(["simulate", "--esl", "nohost"]) == 2
    assert "--esl" in capsys.readouterr().err
