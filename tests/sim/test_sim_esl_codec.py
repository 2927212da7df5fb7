"""The simulator's serialiser reproduces the real FreeSWITCH captures byte for byte."""

from __future__ import annotations

import random

import pytest

from esl_agent.sim import esl_codec
from esl_agent.sim.esl_codec import (
    CommandReader,
    FrameReader,
    decoded,
    parse_event_plain,
    url_decode,
    url_encode,
)
from tests.fixture_data import chunks

CAPTURES = [
    "outbound-session.raw.jsonl",
    "outbound-session.variant-nolinger.raw.jsonl",
    "audio-fork.esl.raw.jsonl",
    "audio-fork.edge.esl.raw.jsonl",
    "jambonz-fork.esl.raw.jsonl",
    "inbound-session.raw.jsonl",
]


def _frames(name: str):
    return FrameReader().feed(b"".join(chunks(name)))


@pytest.mark.parametrize("name", CAPTURES)
def test_every_captured_event_reserialises_identically(name: str) -> None:
    frames = [f for f in _frames(name) if f.content_type == "text/event-plain"]
    assert frames, "capture has events"
    for f in frames:
        headers, body = parse_event_plain(f.body)
        if body:
            assert headers[-1][0] == "Content-Length"
            headers = headers[:-1]
        out = esl_codec.event_frame(decoded(headers), body or None)
        assert out == f.raw


@pytest.mark.parametrize("name", CAPTURES)
def test_api_responses_and_replies_reserialise_identically(name: str) -> None:
    seen = 0
    for f in _frames(name):
        if f.content_type == "api/response":
            assert esl_codec.api_response(f.body) == f.raw
            seen += 1
        elif f.content_type == "command/reply" and f.get("Reply-Text", "").startswith("%2BOK"):
            hdrs = decoded(f.headers[:-4])
            assert esl_codec.connect_reply(hdrs) == f.raw
            seen += 1
        elif f.content_type == "command/reply":
            extra = [(k, v) for k, v in f.headers[2:]]
            assert esl_codec.command_reply(f.get("Reply-Text"), extra) == f.raw
            seen += 1
    assert seen


def test_connect_reply_has_no_content_length_and_ends_with_reply_headers() -> None:
    first = _frames("outbound-session.raw.jsonl")[0]
    assert first.get("Content-Length") is None
    assert [k for k, _ in first.headers[-4:]] == ["Content-Type", "Reply-Text", "Socket-Mode",
                                                  "Control"]
    assert first.get("Reply-Text") == "%2BOK%0A"


def test_disconnect_notices_match_capture() -> None:
    frames = [f for f in _frames("outbound-session.raw.jsonl")
              if f.content_type == "text/disconnect-notice"]
    linger, final = frames
    uuid = linger.get("Controlled-Session-UUID")
    assert esl_codec.linger_notice(uuid, linger.get("Channel-Name"), -1) == linger.raw
    assert esl_codec.disconnect_notice(uuid) == final.raw
    assert len(final.body) == 67


def test_inner_body_framing_fact_4() -> None:
    headers = [("Event-Subclass", "mod_audio_fork::play_audio"), ("Event-Name", "CUSTOM")]
    body = '{"file":"/tmp/x_0.tmp.r8"}'
    out = esl_codec.event_frame(headers, body)
    outer_len = int(out.split(b"\n", 1)[0].split(b": ")[1])
    payload = out.split(b"\n\n", 1)[1]
    assert len(payload) == outer_len
    assert payload.startswith(b"Event-Subclass: mod_audio_fork%3A%3Aplay_audio\nEvent-Name: CUSTOM\n")
    assert payload.endswith(b"Content-Length: 26\n\n" + body.encode())


@pytest.mark.parametrize(
    ("raw", "enc"),
    [
        ("+OK\n", "%2BOK%0A"),
        ("tone_stream://%(1000,0,440)", "tone_stream%3A//%25(1000,0,440)"),
        ("fd00::2", "fd00%3A%3A2"),
        ("Wed, 25 Nov 2026 08:24:21 GMT", "Wed,%2025%20Nov%202026%2008%3A24%3A21%20GMT"),
        ("already %3A encoded", "already%20%3A%20encoded"),
        ('"sipp" <sipp>', "%22sipp%22%20%3Csipp%3E"),
        ("Grüß", "Gr%C3%BC%C3%9F"),
    ],
)
def test_url_encoding(raw: str, enc: str) -> None:
    assert url_encode(raw) == enc


def test_empty_value_is_undef() -> None:
    assert esl_codec.serialize_plain([("X", "")]) == b"X: _undef_\n\n"


def test_url_decode_inverts_encode() -> None:
    for value in ["a b:c", "v=0\r\no=x", "100%", "Grüß", "a%zz"]:
        assert url_decode(url_encode(value)) == value


def test_command_reader_handles_crlf_bodies_and_any_split() -> None:
    stream = (b"\r\nconnect\n\nsendmsg\r\ncall-command: execute\r\nexecute-app-name: playback\r\n"
              b"content-type: text/plain\r\ncontent-length: 5\r\n\r\nhello"
              b"api uuid_break x all\n\n")
    rng = random.Random(3)
    for _ in range(50):
        reader = CommandReader()
        cmds = []
        pos = 0
        while pos < len(stream):
            step = rng.randint(1, 12)
            cmds += reader.feed(stream[pos:pos + step])
            pos += step
        assert [c.line for c in cmds] == ["connect", "sendmsg", "api uuid_break x all"]
        assert cmds[1].header("Execute-App-Name") == "playback"
        assert cmds[1].body == b"hello"


def test_frame_reader_frames_capture_split_at_random_points() -> None:
    data = b"".join(chunks("outbound-session.raw.jsonl"))
    whole = [f.raw for f in FrameReader().feed(data)]
    rng = random.Random(7)
    reader = FrameReader()
    got = []
    pos = 0
    while pos < len(data):
        step = rng.randint(1, 4000)
        got += [f.raw for f in reader.feed(data[pos:pos + step])]
        pos += step
    assert got == whole
    assert b"".join(whole) == data
