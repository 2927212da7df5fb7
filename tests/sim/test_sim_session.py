"""The simulator's outbound ESL session against a fake controller, compared with the captures."""

from __future__ import annotations

import json
import time

import gevent
import pytest

from esl_agent.sim.esl_codec import Frame, FrameReader, parse_event_plain
from esl_agent.sim.freeswitch import Faults, FreeSwitchSimulator
from tests.fixture_data import chunks
from tests.sim.harness import EslConn, FakeEsl, event_headers, event_name, sim_greenlets

pytestmark = pytest.mark.wire

ANSWER = "sendmsg\ncall-command: execute\nexecute-app-name: answer\nevent-lock: true\nEvent-UUID: {}"
TONE = "sendmsg\ncall-command: execute\nexecute-app-name: playback\nexecute-app-arg: {}"
HANGUP = "sendmsg\ncall-command: execute\nexecute-app-name: hangup"


def _shape(frame: Frame) -> tuple:
    ct = frame.content_type
    names = [k for k, _ in frame.headers]
    if ct == "text/event-plain":
        return ("event", event_name(frame), tuple(names))
    if ct == "command/reply":
        return ("reply", tuple(names), frame.get("Reply-Text"))
    if ct == "api/response":
        return ("api", tuple(names), frame.body)
    return ("notice", tuple(names), frame.get("Content-Disposition"), frame.body)


def _non_variable_names(frame: Frame) -> list[str]:
    headers, _ = parse_event_plain(frame.body)
    return [k for k, _ in headers if not k.startswith("variable_")]


def _start(fake_esl: FakeEsl, **kw) -> tuple[FreeSwitchSimulator, object, EslConn]:
    sim = FreeSwitchSimulator(fake_esl.address, **kw)
    call = sim.place_call(caller_number="+4366412345", caller_name="Anna",
                          destination="+43720123456", sip_headers={"X-Tenant": "acme"})
    conn = fake_esl.accept()
    return sim, call, conn


def _until(pred, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not met"
        gevent.sleep(0.005)


def _answer(conn: EslConn, app_uuid: str = "a1a1a1a1-0000-4000-8000-000000000001") -> None:
    assert conn.command(ANSWER.format(app_uuid)).get("Reply-Text") == "+OK"
    conn.wait_event("CHANNEL_EXECUTE_COMPLETE")


def test_connect_reply_is_channel_data_for_a_ringing_channel(fake_esl: FakeEsl) -> None:
    sim, call, conn = _start(fake_esl)
    assert conn.chunks == [] or conn.frames == []  # FreeSWITCH sends nothing before `connect`
    reply = conn.command("connect")
    raw = reply.raw
    assert raw.startswith(b"Event-Name: CHANNEL_DATA\nCore-UUID: ")
    assert raw.endswith(b"Content-Type: command/reply\nReply-Text: %2BOK%0A\n"
                        b"Socket-Mode: async\nControl: full\n\n")
    assert reply.get("Content-Length") is None
    h = dict(reply.headers)
    assert h["Unique-ID"] == call.uuid
    assert h["Answer-State"] == "ringing"
    assert h["Caller-Caller-ID-Number"] == "%2B4366412345"
    assert h["Caller-Caller-ID-Name"] == "Anna"
    assert h["Caller-Destination-Number"] == "%2B43720123456"
    assert h["variable_sip_from_user"] == "%2B4366412345"
    assert h["variable_sip_h_X-Tenant"] == "acme"
    # header order: every name we send appears in the same relative order as in the capture
    capture = FrameReader().feed(b"".join(chunks("outbound-session.raw.jsonl")))[0]
    cap_names = [k for k, _ in capture.headers]
    ours = [k for k, _ in reply.headers if k in cap_names]
    assert ours == [k for k in cap_names if k in ours]
    assert [k for k, _ in reply.headers[:13]] == cap_names[:13]
    sim.shutdown()


def test_outbound_session_matches_capture_framing(fake_esl: FakeEsl) -> None:
    """connect, myevents, linger, playback, uuid_break all, hangup, linger notice, exit."""
    _sim, call, conn = _start(fake_esl)
    conn.command("connect")
    assert conn.command("myevents").get("Reply-Text") == "+OK Events Enabled"
    assert conn.command("linger").get("Reply-Text") == "+OK will linger"
    _answer(conn)
    start = len(conn.frames)
    conn.command(TONE.format("tone_stream://%(1000,0,440)"))
    conn.wait_event("CHANNEL_EXECUTE", start=len(conn.events))
    _until(lambda: call.recording.heard_segments())  # the caller hears the tone, then break
    assert conn.api(f"uuid_break {call.uuid} all") == "+OK\n"
    conn.wait_event("CHANNEL_EXECUTE_COMPLETE", start=len(conn.events))
    conn.command(HANGUP)
    conn.wait_notice("linger")
    assert conn.command("exit").get("Reply-Text") == "+OK bye"
    conn.wait_notice("disconnect")
    assert conn.closed.wait(5)
    assert call.wait(5)

    ours = [_shape(f) for f in conn.frames[start:] if event_name(f) != "CHANNEL_PARK"]
    capture = FrameReader().feed(b"".join(chunks("outbound-session.raw.jsonl")))
    # from the playback sendmsg's +OK (4th frame) to the end
    theirs = [_shape(f) for f in capture[3:] if event_name(f) != "CHANNEL_PARK"]
    ours = [s if s[0] != "notice" else s[:3] for s in ours]
    theirs = [s if s[0] != "notice" else s[:3] for s in theirs]
    assert [s[:2] for s in ours] == [s[:2] for s in theirs]
    assert ours == theirs

    # each event: the non-variable headers in exactly the captured order
    cap_events = [f for f in capture if f.content_type == "text/event-plain"
                  and event_name(f) != "CHANNEL_PARK"]
    our_events = [f for f in conn.frames[start:] if f.content_type == "text/event-plain"
                  and event_name(f) != "CHANNEL_PARK"]
    dynamic = ("variable_current_loop", "variable_total_loops", "variable_current_application",
               "variable_current_application_data", "variable_current_application_response",
               "variable_playback_last_offset_pos", "variable_playback_seconds",
               "variable_playback_ms", "variable_playback_samples", "variable_hangup_cause")
    for mine, real in zip(our_events, cap_events, strict=True):
        assert _non_variable_names(mine) == _non_variable_names(real), event_name(real)
        order = [[k for k, _ in parse_event_plain(f.body)[0] if k in dynamic]
                 for f in (mine, real)]
        assert order[0] == order[1], event_name(real)

    done = [event_headers(f) for f in our_events if event_name(f) == "CHANNEL_EXECUTE_COMPLETE"]
    playback = done[0]
    assert playback["Application"] == "playback"
    assert playback["Application-Response"] == "FILE PLAYED"
    assert playback["variable_playback_ms"] == "1000"
    assert playback["variable_playback_samples"] == "8000"
    assert 0 < int(playback["variable_playback_last_offset_pos"]) < 8000
    assert [d["Application"] for d in done] == ["playback", "hangup", "socket"]
    linger, final = conn.notices
    assert linger.get("Linger-Time") == "-1"
    assert linger.get("Controlled-Session-UUID") == call.uuid
    assert final.body == b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
    assert "CHANNEL_DESTROY" not in conn.event_names()


def test_without_linger_the_final_notice_follows_at_once(fake_esl: FakeEsl) -> None:
    _sim, call, conn = _start(fake_esl)
    conn.command("connect")
    conn.command("myevents")
    _answer(conn)
    conn.command(HANGUP)
    assert conn.closed.wait(5)
    assert [f.get("Content-Disposition") for f in conn.notices] == ["disconnect"]
    names = conn.event_names()
    tail = names[names.index("CHANNEL_HANGUP") - 1:]
    assert tail == ["CHANNEL_EXECUTE", "CHANNEL_HANGUP", "CHANNEL_EXECUTE_COMPLETE",
                    "CHANNEL_UNPARK", "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_STATE",
                    "CHANNEL_STATE", "CHANNEL_HANGUP_COMPLETE"]
    assert conn.frames[-1].content_type == "text/disconnect-notice"
    assert call.wait(5)


def test_linger_with_seconds_closes_by_itself(fake_esl: FakeEsl) -> None:
    _sim, call, conn = _start(fake_esl)
    conn.command("connect")
    conn.command("myevents")
    assert conn.command("linger 1").get("Reply-Text") == "+OK will linger 1 seconds"
    _answer(conn)
    conn.command(HANGUP)
    assert conn.wait_notice("linger").get("Linger-Time") == "1"
    assert conn.closed.wait(5)
    assert [f.get("Content-Disposition") for f in conn.notices] == ["linger", "disconnect"]
    assert call.wait(1)


def test_command_replies_and_errors(fake_esl: FakeEsl) -> None:
    sim, call, conn = _start(fake_esl)
    # outbound sockets are pre-authenticated: commands before `connect` are served
    assert conn.command("myevents").get("Reply-Text") == "+OK Events Enabled"
    conn.command("connect")
    assert conn.command("myevents").get("Reply-Text") == "-ERR aready enabled."
    assert conn.command("bogus").get("Reply-Text") == "-ERR command not found"
    assert conn.command("nolinger").get("Reply-Text") == "+OK will not linger"
    assert conn.command("filter Unique-ID " + call.uuid).get("Reply-Text") == (
        f"+OK filter added. [Unique-ID]=[{call.uuid}]")
    assert conn.command("event plain CUSTOM esl_agent::state").get("Reply-Text") == (
        "+OK event listener enabled plain")
    assert conn.api("no_such_command foo") == "-ERR no_such_command Command not found!\n"
    assert conn.api("uuid_break 00000000-0000-0000-0000-000000000000") == (
        "-ERR No such channel!\n")
    assert conn.api(f"uuid_exists {call.uuid}") == "true"
    assert conn.api("uuid_exists 00000000-0000-0000-0000-000000000000") == "false"
    sim.shutdown()


def test_sendevent_is_recorded_and_delivered(fake_esl: FakeEsl) -> None:
    sim, call, conn = _start(fake_esl)
    conn.command("connect")
    conn.command("event plain CUSTOM esl_agent::state")
    reply = conn.command(f"sendevent CUSTOM\nEvent-Subclass: esl_agent::state\n"
                         f"Unique-ID: {call.uuid}\nagent-state: listening\nturn-id: 3")
    text = reply.get("Reply-Text")
    assert text.startswith("+OK ") and len(text) == 4 + 36
    ev = conn.wait_event("esl_agent::state")
    h = event_headers(ev)
    assert h["agent-state"] == "listening" and h["Event-UUID"] == text[4:]
    assert list(h)[:2] == ["Event-Subclass", "Event-Name"]
    state = call.recording.state_events()
    assert state[0]["headers"]["agent-state"] == "listening"
    sim.shutdown()


def test_setvar_getvar_dump(fake_esl: FakeEsl) -> None:
    sim, call, conn = _start(fake_esl)
    conn.command("connect")
    assert conn.api(f"uuid_setvar {call.uuid} agent_state thinking hard") == "+OK\n"
    assert conn.api(f"uuid_setvar_multi {call.uuid} turn_id=4;last_intent=book") == "+OK\n"
    assert conn.api(f"uuid_getvar {call.uuid} agent_state") == "thinking hard"
    assert conn.api(f"uuid_getvar {call.uuid} nope") == "_undef_"
    dump = conn.api(f"uuid_dump {call.uuid}")
    assert dump.startswith("Event-Name: CHANNEL_DATA\n")
    assert "variable_agent_state: thinking hard\n" in dump
    assert "variable_turn_id: 4\n" in dump and "variable_last_intent: book\n" in dump
    sim.shutdown()


def test_playback_events_missing_file_and_fifo_with_break_all(fake_esl: FakeEsl, tmp_path) -> None:
    sim, call, conn = _start(fake_esl)
    conn.command("connect")
    conn.command("myevents")
    conn.command("event plain PLAYBACK_START PLAYBACK_STOP")
    _answer(conn)
    mark = len(conn.events)
    conn.command(TONE.format(str(tmp_path / "missing.wav")))
    done = conn.wait_event("CHANNEL_EXECUTE_COMPLETE", start=mark)
    assert event_headers(done)["Application-Response"] == "FILE NOT FOUND"
    assert "PLAYBACK_START" not in conn.event_names()[mark:]

    # three queued playbacks; uuid_break all during the first drops the other two
    mark = len(conn.events)
    for _ in range(3):
        conn.command(TONE.format("tone_stream://%(2000,0,440)"))
    conn.wait_event("PLAYBACK_START", start=mark)
    assert conn.api(f"uuid_break {call.uuid} all") == "+OK\n"
    stop = conn.wait_event("PLAYBACK_STOP", start=mark)
    assert event_headers(stop)["Playback-Status"] == "break"
    assert event_headers(stop)["Playback-File-Type"] == "tone_stream"
    conn.wait_event("CHANNEL_EXECUTE_COMPLETE", start=mark)
    # uuid_break without `all` lets the next queued app start
    mark2 = len(conn.events)
    conn.command(TONE.format("silence_stream://3000"))
    conn.command(TONE.format("tone_stream://%(100,0,440)"))
    conn.wait_event("PLAYBACK_START", start=mark2)
    conn.api(f"uuid_break {call.uuid}")
    stop2 = conn.wait_event("PLAYBACK_STOP", start=mark2)
    assert event_headers(stop2)["Playback-Status"] == "break"
    second = mark2 + conn.event_names()[mark2:].index("PLAYBACK_STOP") + 1
    last = conn.wait_event("PLAYBACK_STOP", start=second)
    assert event_headers(last)["Playback-Status"] == "done"
    names = conn.event_names()[mark:]
    assert names.count("CHANNEL_EXECUTE") == 3  # first tone + silence + short tone
    sim.shutdown()


def test_call_command_hangup_with_cause_and_caller_hangup_mid_playback(fake_esl: FakeEsl) -> None:
    _sim, call, conn = _start(fake_esl)
    conn.command("connect")
    conn.command("myevents")
    conn.command("event plain PLAYBACK_START PLAYBACK_STOP")
    _answer(conn)
    mark = len(conn.events)
    conn.command(TONE.format("tone_stream://%(5000,0,440)"))
    conn.wait_event("PLAYBACK_START", start=mark)
    call.hangup("NORMAL_CLEARING")
    conn.wait_event("CHANNEL_HANGUP_COMPLETE", start=mark)
    names = conn.event_names()[mark:]
    assert names == ["CHANNEL_EXECUTE", "PLAYBACK_START", "CHANNEL_HANGUP", "PLAYBACK_STOP",
                     "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_UNPARK", "CHANNEL_EXECUTE_COMPLETE",
                     "CHANNEL_STATE", "CHANNEL_STATE", "CHANNEL_HANGUP_COMPLETE"]
    hc = event_headers(conn.events[-1])
    assert hc["variable_sip_hangup_disposition"] == "recv_bye"
    assert list(hc)[13] == "Hangup-Cause"
    assert conn.closed.wait(5)

    _sim2, _call2, conn2 = _start(fake_esl)
    conn2.command("connect")
    conn2.command("myevents")
    conn2.command("sendmsg\ncall-command: hangup\nhangup-cause: USER_BUSY")
    ev = conn2.wait_event("CHANNEL_HANGUP")
    assert event_headers(ev)["Hangup-Cause"] == "USER_BUSY"
    assert conn2.closed.wait(5)


def test_transfer_ends_socket_app_then_destination_hangs_up(fake_esl: FakeEsl) -> None:
    _sim, call, conn = _start(fake_esl, transfer_hold_s=0.05)
    conn.command("connect")
    conn.command("myevents")
    _answer(conn)
    mark = len(conn.events)
    assert conn.api(f"uuid_transfer {call.uuid} 1000 XML default") == "+OK\n"
    conn.wait_event("CHANNEL_HANGUP_COMPLETE", start=mark)
    names = conn.event_names()[mark:]
    assert names[:2] == ["CHANNEL_UNPARK", "CHANNEL_EXECUTE_COMPLETE"]
    assert names[2:] == ["CHANNEL_HANGUP", "CHANNEL_STATE", "CHANNEL_STATE",
                         "CHANNEL_HANGUP_COMPLETE"]
    transfer = call.recording.entries("transfer")[0]
    assert (transfer["destination"], transfer["context"]) == ("1000", "default")
    assert conn.closed.wait(5)


def test_fault_switches(fake_esl: FakeEsl) -> None:
    sim = FreeSwitchSimulator(fake_esl.address)
    call = sim.place_call(faults=Faults(api_errors={"uuid_break": "-ERR boom\n"},
                                        drop_after_command="uuid_setvar"))
    conn = fake_esl.accept()
    conn.command("connect")
    assert conn.api(f"uuid_break {call.uuid}") == "-ERR boom\n"
    conn.send(f"api uuid_setvar {call.uuid} a b")
    assert conn.closed.wait(5)
    assert call.wait(5)

    call2 = sim.place_call(faults=Faults(garbage_at=0.0, split_writes=True))
    conn2 = fake_esl.accept()
    conn2.send("connect")
    _until(lambda: b"Control: full\n\n" in b"".join(conn2.chunks))
    data = b"".join(conn2.chunks)
    assert data.startswith(b"\x00\xffgarbage that is no frame")
    assert call2.partial_writes > 1  # the connect reply went out in several writes
    sim.shutdown()
    assert call2.wait(5)


def test_no_greenlet_left_after_the_call(fake_esl: FakeEsl) -> None:
    sim, call, conn = _start(fake_esl)
    conn.command("connect")
    conn.command("myevents")
    conn.command("linger")
    _answer(conn)
    conn.command(TONE.format("tone_stream://%(5000,0,440)"))
    conn.wait_event("CHANNEL_EXECUTE", start=len(conn.events))
    assert sim_greenlets()
    call.hangup("NORMAL_CLEARING")
    conn.wait_notice("linger")
    assert not call.wait(0.05)  # lingering forever until `exit`
    conn.command("exit")
    assert call.wait(5)
    gevent.sleep(0)
    assert sim_greenlets() == []
    assert sim.calls_by_uuid == {}


def test_truncated_frame_and_abrupt_drop(fake_esl: FakeEsl) -> None:
    sim = FreeSwitchSimulator(fake_esl.address)
    call = sim.place_call(faults=Faults(truncated_at=0.05))
    conn = fake_esl.accept()
    conn.command("connect")
    assert conn.closed.wait(5)
    assert conn.reader.pending.startswith(b"Content-Length: ")  # a frame that never completes
    assert call.wait(5)
    assert call.recording.entries("fault")[0]["what"] == "truncated"

    call2 = sim.place_call(faults=Faults(drop_at=0.05))
    conn2 = fake_esl.accept()
    conn2.command("connect")
    assert conn2.closed.wait(5)
    assert call2.wait(5)
    assert call2.recording.entries("hangup")[0]["by"] == "dialplan end"


def test_json_event_format(fake_esl: FakeEsl) -> None:
    sim, call, conn = _start(fake_esl)
    conn.command("connect")
    assert conn.command("myevents json").get("Reply-Text") == "+OK Events Enabled"
    conn.command(ANSWER.format("b2"))
    _until(lambda: any(f.content_type == "text/event-json" for f in conn.events))
    frame = next(f for f in conn.events if f.content_type == "text/event-json")
    body = json.loads(frame.body)
    assert body["Unique-ID"] == call.uuid and body["Caller-Caller-ID-Number"] == "+4366412345"
    assert [k for k, _ in frame.headers] == ["Content-Length", "Content-Type"]
    sim.shutdown()
