"""The simulated mod_audio_fork: upgrade, frames, server messages (facts 10-23)."""

from __future__ import annotations

import base64
import json
import re
import socket
import time
from pathlib import Path

import gevent
import numpy as np
import pytest

from esl_agent.sim.caller import CallerScript, speech_like, tone
from esl_agent.sim.fork_client import StreamPlayout
from esl_agent.sim.freeswitch import Faults, FreeSwitchSimulator
from tests.sim.harness import EslConn, FakeEsl, event_headers, sim_greenlets

pytestmark = pytest.mark.wire

SUBSCRIBE = (
    "event plain PLAYBACK_START PLAYBACK_STOP CUSTOM mod_audio_fork::connect "
    "mod_audio_fork::connect_failed mod_audio_fork::disconnect mod_audio_fork::play_audio "
    "mod_audio_fork::kill_audio mod_audio_fork::json mod_audio_fork::transcription "
    "mod_audio_fork::transfer mod_audio_fork::error mod_audio_fork::buffer_overrun"
)
CAPTURED_UPGRADE = (
    "GET / HTTP/1.1\r\nPragma: no-cache\r\nCache-Control: no-cache\r\nHost: 127.0.0.1\r\n"
    "Origin: http://127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: KEY\r\nSec-WebSocket-Protocol: audio.drachtio.org\r\n"
    "Sec-WebSocket-Version: 13\r\n\r\n"
)


def _until(pred, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not met"
        gevent.sleep(0.005)


def _answered_call(fake_esl: FakeEsl, fork_mode: str = "play_audio", script=None, **kw):
    sim = FreeSwitchSimulator(fake_esl.address, fork_mode=fork_mode, **kw)
    call = sim.place_call(script=script)
    conn = fake_esl.accept()
    conn.command("connect")
    conn.command("myevents")
    conn.command(SUBSCRIBE)
    conn.command("sendmsg\ncall-command: execute\nexecute-app-name: answer")
    conn.wait_event("CHANNEL_ANSWER")
    return sim, call, conn


def _play(conn: EslConn, target: str) -> None:
    conn.command(f"sendmsg\ncall-command: execute\nexecute-app-name: playback\n"
                 f"execute-app-arg: {target}\nevent-lock: true")


def test_upgrade_request_and_first_frames_like_the_capture(fake_esl, fork_server) -> None:
    sim, call, conn = _answered_call(fake_esl)
    assert conn.api(f"uuid_audio_fork {call.uuid} start {fork_server.url} mono 8k") == (
        "+OK Success\n")
    ws = fork_server.wait_conn()
    req = re.sub(r"Sec-WebSocket-Key: [^\r]+", "Sec-WebSocket-Key: KEY", ws.request.decode())
    assert req == CAPTURED_UPGRADE
    conn.wait_event("mod_audio_fork::connect")
    ws.wait_for(lambda: len(ws.frames) >= 3)
    # no metadata: the first frame is binary; every frame 320 bytes, masked, FIN set
    assert [f.kind for f in ws.frames[:3]] == ["binary"] * 3
    assert {len(f.data) for f in ws.binaries()} == {320}
    first = bytes(ws.raw_in[len(ws.request):len(ws.request) + 2])
    assert first[0] == 0x82 and first[1] & 0x80 and first[1] & 0x7F == 126
    sim.shutdown()


def test_metadata_text_frame_path_and_rates(fake_esl, fork_server) -> None:
    sim, call, conn = _answered_call(fake_esl, frame_ms=30)
    meta = '{"uuid":"' + call.uuid + '","x":1}'
    url = f"{fork_server.url}/fork/{call.uuid}"
    assert conn.api(f"uuid_audio_fork {call.uuid} start {url} mono 8k {meta}") == "+OK Success\n"
    ws = fork_server.wait_conn()
    assert ws.request.startswith(f"GET /fork/{call.uuid} HTTP/1.1\r\n".encode())
    ws.wait_for(lambda: len(ws.binaries()) >= 2)
    assert ws.frames[0].kind == "text" and ws.frames[0].data == meta
    assert {len(f.data) for f in ws.binaries()} == {480}  # 30 ms packets -> 480-byte frames
    # a second bug at 16 kHz: 30 ms -> 960 bytes
    assert conn.api(f"uuid_audio_fork {call.uuid} start {fork_server.url} mono 16k b2 "
                    f"{meta}") == "+OK Success\n"
    ws2 = fork_server.wait_conn(2)
    ws2.wait_for(lambda: len(ws2.binaries()) >= 2)
    assert {len(f.data) for f in ws2.binaries()} == {960}
    # same bug name again -> -ERR Operation Failed
    assert conn.api(f"uuid_audio_fork {call.uuid} start {fork_server.url} mono 8k b2") == (
        "-ERR Operation Failed\n")
    sim.shutdown()


def test_send_text_stop_and_server_close(fake_esl, fork_server) -> None:
    sim, call, conn = _answered_call(fake_esl)
    conn.api(f"uuid_audio_fork {call.uuid} start {fork_server.url} mono 8k")
    ws = fork_server.wait_conn()
    conn.wait_event("mod_audio_fork::connect")
    assert conn.api(f'uuid_audio_fork {call.uuid} send_text {{"a":1}}') == "+OK Success\n"
    mark = len(conn.events)
    assert conn.api(f'uuid_audio_fork {call.uuid} stop {{"bye":true}}') == "+OK Success\n"
    ws.wait_for(lambda: ws.frames and ws.frames[-1].kind == "close")
    texts = ws.texts()
    assert texts == ['{"a":1}', '{"bye":true}']
    assert ws.frames[-1].data == "1000"
    # a stop from FreeSWITCH's side fires no event (fact 14), also once the echo came back
    fork_close = [e for e in call.recording.entries("ws") if e.get("op") == "close"]
    _until(lambda: ws.closed.is_set())
    assert conn.event_names()[mark:] == []
    assert len(fork_close) == 1 and fork_close[0]["dir"] == "C->S"

    # server-initiated close: FreeSWITCH echoes it and fires disconnect
    conn.api(f"uuid_audio_fork {call.uuid} start {fork_server.url} mono 8k")
    ws2 = fork_server.wait_conn(2)
    ws2.wait_for(lambda: len(ws2.binaries()) >= 1)
    ws2.close(1000, "server bye")
    conn.wait_event("mod_audio_fork::disconnect")
    ws2.wait_for(lambda: ws2.closed.is_set() or any(f.kind == "close" for f in ws2.frames))
    # the bug stays attached until stop
    assert conn.api(f"uuid_audio_fork {call.uuid} stop") == "+OK Success\n"
    sim.shutdown()


def test_connect_failure_keeps_the_bug_attached(fake_esl) -> None:
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()  # nothing listens there
    sim, call, conn = _answered_call(fake_esl)
    url = f"ws://127.0.0.1:{port}"
    assert conn.api(f"uuid_audio_fork {call.uuid} start {url} mono 8k") == "+OK Success\n"
    ev = conn.wait_event("mod_audio_fork::connect_failed")
    assert ev.raw.endswith(b'Content-Length: 30\n\n{"reason":"Unable to connect"}')
    assert conn.api(f"uuid_audio_fork {call.uuid} start {url} mono 8k") == (
        "-ERR Operation Failed\n")
    assert conn.api(f"uuid_audio_fork {call.uuid} stop") == "+OK Success\n"
    assert conn.api(f"uuid_audio_fork {call.uuid} start {url} quad 8k") == "-ERR no reply\n"
    assert conn.api(f"uuid_audio_fork {call.uuid} start").startswith("-USAGE: <uuid> [start")
    assert conn.api("uuid_audio_fork 00000000-0000-0000-0000-000000000000 stop") == (
        "-ERR Operation Failed\n")
    sim.shutdown()


def test_connect_failure_fault_switch(fake_esl, fork_server) -> None:
    sim = FreeSwitchSimulator(fake_esl.address, faults=Faults(fork_connect_fails=True))
    call = sim.place_call()
    conn = fake_esl.accept()
    conn.command("connect")
    conn.command("myevents")
    conn.command(SUBSCRIBE)
    conn.command("sendmsg\ncall-command: execute\nexecute-app-name: answer")
    conn.wait_event("CHANNEL_ANSWER")
    conn.api(f"uuid_audio_fork {call.uuid} start {fork_server.url} mono 8k")
    conn.wait_event("mod_audio_fork::connect_failed")
    assert fork_server.conns == []
    sim.shutdown()


def test_play_audio_mode_writes_file_and_kill_audio_breaks_only_current(
        fake_esl, fork_server, tmp_path: Path) -> None:
    _sim, call, conn = _answered_call(fake_esl, tmp_dir=str(tmp_path))
    conn.api(f"uuid_audio_fork {call.uuid} start {fork_server.url} mono 8k")
    ws = fork_server.wait_conn()
    conn.wait_event("mod_audio_fork::connect")
    audio = tone(440, 500).tobytes()
    msg = {"type": "playAudio", "data": {"audioContentType": "raw", "sampleRate": 8000,
                                         "audioContent": base64.b64encode(audio).decode(),
                                         "textContent": "hi"}}
    ws.send_text(json.dumps(msg))
    ev = conn.wait_event("mod_audio_fork::play_audio")
    body = json.loads(ev.raw.rsplit(b"\n\n", 1)[1])
    assert body["file"] == str(tmp_path / f"{call.uuid}_0.tmp.r8")
    assert body == {"audioContentType": "raw", "sampleRate": 8000, "textContent": "hi",
                    "file": body["file"]}
    assert Path(body["file"]).read_bytes() == audio
    assert list(event_headers(ev))[:2] == ["Event-Subclass", "Event-Name"]

    # two playbacks queued; killAudio breaks the first only, the second still plays (fact 13)
    mark = len(conn.events)
    _play(conn, "tone_stream://%(3000,0,440)")
    _play(conn, body["file"])
    conn.wait_event("PLAYBACK_START", start=mark)
    _until(lambda: call.recording.heard_segments())
    ws.send_text('{"type": "killAudio"}')
    kill = conn.wait_event("mod_audio_fork::kill_audio", start=mark)
    assert kill.raw.endswith(b"\n\n") and b"Content-Length: " not in kill.raw.split(b"\n\n", 1)[1]
    stop = conn.wait_event("PLAYBACK_STOP", start=mark)
    assert event_headers(stop)["Playback-Status"] == "break"
    second = conn.event_names()[mark:].index("PLAYBACK_STOP") + mark + 1
    done = conn.wait_event("PLAYBACK_STOP", start=second)
    assert event_headers(done)["Playback-File-Path"] == body["file"]
    assert event_headers(done)["Playback-Status"] == "done"
    segs = call.recording.heard_segments()
    assert [s["interrupted"] for s in segs] == [True, False]

    # garbage text is ignored, the connection keeps working
    ws.send_text("this is not json")
    ws.send_text('{"type":"transcription","data":{"text":"hello","final":true}}')
    ev = conn.wait_event("mod_audio_fork::transcription")
    assert ev.raw.endswith(b'Content-Length: 29\n\n{"text":"hello","final":true}')
    assert call.recording.entries("ws_ignored")[0]["reason"] == "not JSON"
    # the temp file disappears with the session
    conn.command("sendmsg\ncall-command: hangup")
    assert call.wait(5)
    assert not Path(body["file"]).exists()
    gevent.sleep(0)
    assert sim_greenlets() == []


def test_stream_mode_plays_binary_audio_marks_and_kill(fake_esl, fork_server) -> None:
    sim, call, conn = _answered_call(fake_esl, fork_mode="stream")
    meta = '{"k":1}'
    assert conn.api(f"uuid_audio_fork {call.uuid} start {fork_server.url} mono 8k audio_fork "
                    f"{meta} true true 8000") == "+OK Success\n"
    ws = fork_server.wait_conn()
    conn.wait_event("mod_audio_fork::connect")
    ws.wait_for(lambda: ws.texts() == [meta])
    # a 400 ms burst then a mark: heard, and the mark answered with the module's spacing
    ws.send_binary(tone(440, 400).tobytes())
    ws.send_text('{"type":"mark","data":{"name":"m1"}}')
    ws.wait_for(lambda: len(ws.texts()) >= 2)
    assert ws.texts()[1] == '{"type": "mark", "data": {"name":"m1", "event": "playout"}}'
    seg = call.recording.heard_segments()[0]
    assert seg["source"] == "stream" and seg["via"] == "stream"
    _until(lambda: seg["end"] is not None)
    assert seg["interrupted"] is False
    # a long burst, a mark, then killAudio: silence, mark cleared, kill_audio event
    ws.send_binary(tone(440, 3000).tobytes())
    ws.send_text('{"type":"mark","data":{"name":"m2"}}')
    _until(lambda: len(call.recording.heard_segments()) >= 2)
    ws.send_text('{"type":"killAudio"}')
    conn.wait_event("mod_audio_fork::kill_audio")
    ws.wait_for(lambda: len(ws.texts()) >= 3)
    assert ws.texts()[2] == '{"type": "mark", "data": {"name":"m2", "event": "cleared"}}'
    _until(lambda: call.recording.heard_segments()[1]["end"] is not None)
    seg2 = call.recording.heard_segments()[1]
    assert seg2["interrupted"] is True and seg2["end"] - seg2["start"] < 2.9
    # playAudio is refused while streaming: no event
    ws.send_text('{"type":"playAudio","data":{"audioContentType":"raw","sampleRate":8000,'
                 '"audioContent":"AAAA"}}')
    ws.send_text('{"type":"json","data":{"k":1}}')
    ev = conn.wait_event("mod_audio_fork::json")
    assert ev.raw.endswith(b'{"type":"json","data":{"k":1}}')
    assert "mod_audio_fork::play_audio" not in conn.event_names()
    sim.shutdown()


def test_stream_playout_keeps_sub_80ms_remainder_after_kill() -> None:
    marks: list[tuple[str, str]] = []
    clock = [0.0]
    p = StreamPlayout(8000, 8000, lambda n, e: marks.append((n, e)), lambda: clock[0])
    old = np.full(800, 1000, dtype="<i2").tobytes()  # 100 ms: 80 ms move, 20 ms stay behind
    p.feed(old)
    p.kill()
    new = np.full(1280, -1000, dtype="<i2").tobytes()  # 160 ms
    p.feed(new)
    frame = np.frombuffer(p.next_frame(160), dtype="<i2")
    assert (frame == 1000).all()  # the old 20 ms remainder plays in front (fact 20)
    frame = np.frombuffer(p.next_frame(160), dtype="<i2")
    assert (frame == -1000).all()


def test_paced_stream_waits_for_prebuffer() -> None:
    clock = [0.0]
    p = StreamPlayout(8000, 8000, lambda n, e: None, lambda: clock[0])
    frames_until_heard = 0
    for _ in range(20):
        p.feed(b"\x10\x00" * 160)
        clock[0] += 0.02
        frames_until_heard += 1
        if p.next_frame(160) is not None:
            break
    assert frames_until_heard == 8  # 160 ms prebuffer (fact 19)


def test_play_audio_module_treats_jambonz_tokens_as_metadata(fake_esl, fork_server) -> None:
    sim, call, conn = _answered_call(fake_esl, fork_mode="play_audio")
    conn.api(f'uuid_audio_fork {call.uuid} start {fork_server.url} mono 8k bug {{"a":1}} '
             f"true true 8000")
    ws = fork_server.wait_conn()
    ws.wait_for(lambda: ws.texts())
    assert ws.texts()[0] == '{"a":1} true true 8000'
    ws.send_binary(tone(440, 500).tobytes())  # drachtio discards binary frames
    ws.send_text('{"type":"error","data":{"why":"x"}}')
    conn.wait_event("mod_audio_fork::error")
    assert call.recording.heard_segments() == []
    sim.shutdown()


def test_fork_start_on_unanswered_channel_crashes_freeswitch(fake_esl, fork_server) -> None:
    sim = FreeSwitchSimulator(fake_esl.address)
    call = sim.place_call()
    other = sim.place_call()
    conn = fake_esl.accept()
    conn2 = fake_esl.accept()
    conn.command("connect")
    conn2.command("connect")
    assert conn.api(f"uuid_audio_fork {call.uuid} start {fork_server.url} mono 8k") == (
        "+OK Success\n")
    assert conn.closed.wait(5) and conn2.closed.wait(5)  # every call on the box is lost
    assert call.recording.entries("crash") and other.recording.entries("crash")
    assert sim.crashed


def test_caller_audio_reaches_the_fork(fake_esl, fork_server) -> None:
    speech = speech_like(300)
    script = CallerScript().say(speech, at=0.3)
    sim, call, conn = _answered_call(fake_esl, script=script)
    conn.api(f"uuid_audio_fork {call.uuid} start {fork_server.url} mono 8k")
    ws = fork_server.wait_conn()

    def loud() -> bytes:
        return b"".join(f.data for f in ws.binaries()
                        if np.abs(np.frombuffer(f.data, "<i2")).max() > 1000)

    _until(lambda: len(loud()) >= 2400 * 2)
    sent = np.frombuffer(loud(), "<i2")
    # the caller's samples arrive unchanged, in order
    at = speech.tobytes().find(sent[:160].tobytes())
    assert at >= 0 and at % 320 == 0  # frame-aligned with the utterance
    start = at // 2
    assert np.array_equal(sent[:2000], speech[start:start + 2000])
    utt = call.recording.entries("caller")[0]
    assert utt["what"] == "utterance" and utt["seconds"] == 0.3
    sim.shutdown()


def test_server_breaking_the_protocol_drops_the_fork(fake_esl, fork_server) -> None:
    sim, call, conn = _answered_call(fake_esl)
    conn.api(f"uuid_audio_fork {call.uuid} start {fork_server.url} mono 8k")
    ws = fork_server.wait_conn()
    conn.wait_event("mod_audio_fork::connect")
    ws.sock.sendall(b"\x8f\x05hello")  # reserved opcode 0xF
    conn.wait_event("mod_audio_fork::disconnect")
    # wsproto turns the parse failure into a close 1002, handled like a server close
    assert any(e.get("op") == "close" and e.get("code") == 1002
               for e in call.recording.entries("ws"))
    assert conn.api(f"uuid_exists {call.uuid}") == "true"  # the call goes on
    sim.shutdown()
