"""Our greenswitch session over a socket pair: replies, events with bodies, deadlines, bad input."""

from __future__ import annotations

import gevent
import gevent.socket
import pytest

from esl_agent.control.session import EslSession
from esl_agent.errors import CallGone, CommandError
from tests.fixture_data import chunks


@pytest.fixture()
def pair():
    ours, theirs = gevent.socket.socketpair()
    session = EslSession(("127.0.0.1", 0), ours, command_timeout=1.0)
    yield session, theirs
    theirs.close()
    session.stop()


def reply_later(sock, data: bytes, delay: float = 0.01) -> gevent.Greenlet:
    return gevent.spawn_later(delay, sock.sendall, data)


def test_connect_reads_channel_data_from_the_real_capture(pair) -> None:
    session, fs = pair
    reply_later(fs, chunks("outbound-session.raw.jsonl")[0])
    data = session.connect()
    assert fs.recv(100) == b"connect\n\n"
    assert session.uuid == "4bdeea82-4a4a-43ed-9871-67c777a5c543"
    assert data["Caller-Destination-Number"] == "1000"


def test_api_error_becomes_command_error(pair) -> None:
    session, fs = pair
    reply_later(fs, b"Content-Type: api/response\nContent-Length: 22\n\n-ERR Operation Failed\n")
    with pytest.raises(CommandError) as err:
        session.api("uuid_audio_fork x start ws://a mono 8k")
    assert err.value.reply == "-ERR Operation Failed"


def test_reply_deadline(pair) -> None:
    session, fs = pair
    with pytest.raises(CommandError, match="timeout"):
        session.send("myevents", timeout=0.05)
    # the late reply pops the stale waiter; the next command still gets its own reply
    fs.sendall(b"Content-Type: command/reply\nReply-Text: +OK Events Enabled\n\n")
    reply_later(fs, b"Content-Type: command/reply\nReply-Text: +OK will linger\n\n")
    assert session.command("linger") == "+OK will linger"


def test_events_with_bodies_reach_handlers_intact(pair) -> None:
    session, fs = pair
    seen = []
    done = gevent.event.Event()

    def on_play(event) -> None:
        seen.append(event)
        done.set()

    session.register_handle("mod_audio_fork::play_audio", on_play)
    data = b"".join(chunks("audio-fork.esl.raw.jsonl"))
    # Start at the outer frame header of the play_audio event (the nearest Content-Length before it).
    frame_start = data.rfind(b"Content-Length: ", 0, data.index(b"mod_audio_fork%3A%3Aplay_audio"))
    fs.sendall(data[frame_start:])
    assert done.wait(3), "play_audio event was not dispatched"
    assert seen[0].body.startswith(b'{"audioContentType":"raw"')
    assert seen[0].body.endswith(b"}")


def test_garbage_closes_the_session_and_wakes_waiters(pair) -> None:
    session, fs = pair
    waiter = gevent.spawn(session.send, "myevents", 5.0)
    gevent.sleep(0)
    fs.sendall(b"\x00\x01garbage without colon\n\n")
    with pytest.raises(CallGone):
        waiter.get(timeout=2)
    assert session.closed.wait(2)
    assert "malformed" in session.protocol_error


def test_peer_closing_mid_body_is_a_clean_call_gone(pair) -> None:
    session, fs = pair
    waiter = gevent.spawn(session.api, "uuid_break abc all")
    gevent.sleep(0)
    fs.sendall(b"Content-Type: api/response\nContent-Length: 100\n\n+OK")
    fs.close()
    with pytest.raises(CallGone):
        waiter.get(timeout=2)
    assert "inside a body" in session.protocol_error
