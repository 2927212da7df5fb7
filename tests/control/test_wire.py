"""The event-socket framer against the real FreeSWITCH captures, split at any point."""

from __future__ import annotations

import json
import random

import pytest

from esl_agent.control.wire import EslFrameParser, parse_event
from esl_agent.errors import ProtocolError
from tests.fixture_data import chunks

CAPTURES = [
    "outbound-session.raw.jsonl",
    "outbound-session.variant-nolinger.raw.jsonl",
    "inbound-session.raw.jsonl",
    "audio-fork.esl.raw.jsonl",
    "audio-fork.edge.esl.raw.jsonl",
    "jambonz-fork.esl.raw.jsonl",
]


def frame_all(parts: list[bytes]) -> list[tuple[str, dict, bytes]]:
    parser = EslFrameParser()
    out = []
    for part in parts:
        for msg in parser.feed(part):
            out.append((msg.content_type, msg.headers, msg.body))
    parser.check_eof()
    return out


@pytest.mark.parametrize("capture", CAPTURES)
def test_random_splits_frame_identically(capture: str) -> None:
    data = b"".join(chunks(capture))
    reference = frame_all(chunks(capture))
    assert reference, "capture produced no messages"
    rng = random.Random(capture)
    for _ in range(25):
        cuts = sorted(rng.sample(range(1, len(data)), k=min(40, len(data) - 1)))
        parts = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]
        assert frame_all(parts) == reference
    # and byte by byte over the first 20 KB
    head = data[:20000]
    parser = EslFrameParser()
    count = sum(len(parser.feed(head[i:i + 1])) for i in range(len(head)))
    assert count == len(EslFrameParser().feed(head)) > 0


def test_outbound_session_sequence_matches_the_capture() -> None:
    messages = frame_all(chunks("outbound-session.raw.jsonl"))
    connect_type, connect_headers, connect_body = messages[0]
    # Fact 1: the connect reply is one header block with no body; Reply-Text URL-decoded.
    assert connect_type == "command/reply"
    assert connect_headers["Event-Name"] == "CHANNEL_DATA"
    assert connect_headers["Reply-Text"] == "+OK\n"
    assert connect_headers["Unique-ID"] == "4bdeea82-4a4a-43ed-9871-67c777a5c543"
    assert connect_headers["Channel-Name"] == "sofia/external/sipp@127.0.0.1:5062"
    assert connect_body == b""
    events = [parse_event(body).name for ctype, _, body in messages if ctype == "text/event-plain"]
    # Fact 8: the hangup sequence, without CHANNEL_DESTROY.
    tail = events[events.index("CHANNEL_HANGUP") - 1:]
    assert tail == ["CHANNEL_EXECUTE", "CHANNEL_HANGUP", "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_UNPARK",
                    "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_STATE", "CHANNEL_STATE", "CHANNEL_HANGUP_COMPLETE"]
    assert "CHANNEL_DESTROY" not in events
    notices = [h for ctype, h, _ in messages if ctype == "text/disconnect-notice"]
    assert [n["Content-Disposition"] for n in notices] == ["linger", "disconnect"]
    assert notices[0]["Linger-Time"] == "-1"
    assert messages[-1][2].startswith(b"Disconnected, goodbye.")
    assert len(messages[-1][2]) == 67


def test_events_with_their_own_body_keep_it_intact() -> None:
    messages = frame_all(chunks("audio-fork.esl.raw.jsonl"))
    events = [parse_event(body) for ctype, _, body in messages if ctype == "text/event-plain"]
    play = next(e for e in events if e.subclass == "mod_audio_fork::play_audio")
    body = json.loads(play.body)
    assert body["file"].endswith(".tmp.r8")
    assert body["sampleRate"] == 8000
    assert "audioContent" not in body
    # Fact 4: in CUSTOM events Event-Subclass comes before Event-Name.
    names = [k for k, _ in play.raw_headers]
    assert names.index("Event-Subclass") < names.index("Event-Name")
    assert play.headers["Content-Length"] == str(len(play.body))


def test_background_job_body() -> None:
    messages = frame_all(chunks("inbound-session.raw.jsonl"))
    jobs = [parse_event(b) for t, _, b in messages if t == "text/event-plain" and b"BACKGROUND_JOB" in b]
    assert jobs, "capture has a BACKGROUND_JOB"
    assert jobs[0].name == "BACKGROUND_JOB"
    assert jobs[0].body, "the job output is the event's own body"
    assert jobs[0].headers["Content-Length"] == str(len(jobs[0].body))


def test_api_response_body_and_command_reply() -> None:
    messages = frame_all(chunks("audio-fork.esl.raw.jsonl"))
    api = [(h, b) for t, h, b in messages if t == "api/response"]
    assert api[0][1] == b"+OK Success\n"
    assert api[0][0]["Content-Length"] == "12"


@pytest.mark.parametrize(
    "data, message",
    [
        (b"this is not a header\n\n", "malformed header line"),
        (b"Content-Length: abc\nContent-Type: api/response\n\n", "not a number"),
        (b"Content-Type: api/response\nContent-Length: 99999999999\n\n", "exceeds"),
        (b"Reply-Text: +OK\n\n", "without Content-Type"),
    ],
)
def test_garbage_raises_protocol_error(data: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        EslFrameParser().feed(data)


def test_lying_content_length_is_detected_at_eof() -> None:
    parser = EslFrameParser()
    assert parser.feed(b"Content-Type: api/response\nContent-Length: 50\n\n+OK\n") == []
    with pytest.raises(ProtocolError, match="inside a body"):
        parser.check_eof()


def test_truncated_header_block_is_detected_at_eof() -> None:
    parser = EslFrameParser()
    parser.feed(b"Content-Type: command/reply\nReply-Text: +O")
    with pytest.raises(ProtocolError, match="header block"):
        parser.check_eof()


def test_truncated_inner_event_body() -> None:
    payload = b"Event-Name: CUSTOM\nContent-Length: 10\n\n{}"
    with pytest.raises(ProtocolError, match="truncated"):
        parse_event(payload)


def test_blank_header_value_does_not_break_parsing() -> None:
    # greenswitch issue #67: a header with an empty value.
    msgs = EslFrameParser().feed(b"Content-Type: command/reply\nReply-Text: +OK\nUser-Data:\n\n")
    assert msgs[0].headers["User-Data"] == ""
