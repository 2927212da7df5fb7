"""FreeSWITCH's side of the event-socket wire format, byte for byte like mod_event_socket 1.10.

Serialisers for what FreeSWITCH sends (command/reply, api/response, plain and json events, the
CHANNEL_DATA connect reply, disconnect notices) and an incremental reader for what a controller
sends (commands with optional headers and body). Reading FreeSWITCH's frames back (tests, tools)
keeps the raw bytes and is lenient about garbage (`FrameReader`); event payloads and values are
parsed like the controller does (`esl_agent.control.wire`). See PROTOCOLS.md 1.3/1.4 and the captures in
tests/fixtures/: event frames put Content-Length first, api/response puts it second, the connect
reply has none, events with a body of their own end with an inner `Content-Length: M` + blank line
+ M bytes and no trailing newline.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote

from esl_agent.control.wire import parse_header_block

Headers = Sequence[tuple[str, str]]

# switch_utils.h SWITCH_URL_UNSAFE
_UNSAFE = set('\r\n #%&+:;<=>?@[\\]^`{|}"')
_HEX = "0123456789ABCDEF"
_SAFE_RE = re.compile(r"^[A-Za-z0-9_./,\-()!$'*~]*$")

GOODBYE_BODY = b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"


def url_encode(value: str) -> str:
    """switch_url_encode (no double encoding): an existing `%XX` with upper-case hex stays as is."""
    if _SAFE_RE.match(value):
        return value
    raw = value.encode("utf-8")
    out: list[str] = []
    n = len(raw)
    i = 0
    while i < n:
        b = raw[i]
        ch = chr(b)
        if (
            ch == "%"
            and n - i > 2
            and chr(raw[i + 1]) in _HEX
            and chr(raw[i + 2]) in _HEX
        ):
            out.append(ch)
        elif b < 0x20 or b > 0x7E or ch in _UNSAFE:
            out.append("%" + _HEX[b >> 4] + _HEX[b & 0x0F])
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def url_decode(value: str) -> str:
    """The inverse of url_encode for values read back from the wire (as the controller decodes)."""
    return unquote(value)


def _as_bytes(body: str | bytes | None) -> bytes:
    if body is None:
        return b""
    return body.encode("utf-8") if isinstance(body, str) else body


def serialize_plain(headers: Headers, body: str | bytes | None = None) -> bytes:
    """switch_event_serialize: `Name: urlencoded\\n` per header, then the body section."""
    parts = []
    for name, value in headers:
        enc = url_encode(value) if value != "" else "_undef_"
        parts.append(f"{name}: {enc}\n")
    raw = "".join(parts).encode("utf-8")
    data = _as_bytes(body)
    if data:
        return raw + b"Content-Length: %d\n\n" % len(data) + data
    return raw + b"\n"


def serialize_json(headers: Headers, body: str | bytes | None = None) -> bytes:
    """switch_event_serialize_json: compact object, plain values, `_body` for a body."""
    obj: dict[str, str] = {}
    for name, value in headers:
        obj[name] = value
    data = _as_bytes(body)
    if data:
        obj["Content-Length"] = str(len(data))
        obj["_body"] = data.decode("utf-8", errors="replace")
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def event_frame(headers: Headers, body: str | bytes | None = None, fmt: str = "plain") -> bytes:
    """An event as mod_event_socket writes it: Content-Length, Content-Type, blank, payload."""
    payload = serialize_json(headers, body) if fmt == "json" else serialize_plain(headers, body)
    return (
        b"Content-Length: %d\nContent-Type: text/event-%s\n\n" % (len(payload), fmt.encode())
        + payload
    )


def connect_reply(channel_headers: Headers, socket_mode: str = "async", control: str = "full") -> bytes:
    """The outbound `connect` reply: the CHANNEL_DATA event serialised with the reply headers last.

    One header block, no Content-Length, every value URL-encoded (so `Reply-Text: %2BOK%0A`).
    """
    headers = [
        *channel_headers,
        ("Content-Type", "command/reply"),
        ("Reply-Text", "+OK\n"),
        ("Socket-Mode", socket_mode),
        ("Control", control),
    ]
    return serialize_plain(headers)


def command_reply(text: str, extra: Headers = ()) -> bytes:
    """`Content-Type: command/reply` + `Reply-Text` (plain, not encoded), no Content-Length."""
    lines = ["Content-Type: command/reply", f"Reply-Text: {text}"]
    lines.extend(f"{k}: {v}" for k, v in extra)
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def api_response(body: str | bytes) -> bytes:
    """`Content-Type: api/response` then `Content-Length` then the output."""
    data = _as_bytes(body)
    return b"Content-Type: api/response\nContent-Length: %d\n\n" % len(data) + data


def linger_notice(uuid: str, channel_name: str, linger_time: int) -> bytes:
    """The notice sent at hangup when lingering (Content-Length last, value 0)."""
    return (
        "Content-Type: text/disconnect-notice\n"
        f"Controlled-Session-UUID: {uuid}\n"
        "Content-Disposition: linger\n"
        f"Channel-Name: {channel_name}\n"
        f"Linger-Time: {linger_time}\n"
        "Content-Length: 0\n\n"
    ).encode()


def disconnect_notice(uuid: str | None) -> bytes:
    """The final notice before FreeSWITCH closes: Content-Length last, the 67-byte goodbye body."""
    lines = ["Content-Type: text/disconnect-notice"]
    if uuid:
        lines.append(f"Controlled-Session-UUID: {uuid}")
    lines.append("Content-Disposition: disconnect")
    lines.append(f"Content-Length: {len(GOODBYE_BODY)}")
    return ("\n".join(lines) + "\n\n").encode("utf-8") + GOODBYE_BODY


# ----------------------------------------------------------------------------- reading


@dataclass
class Command:
    """One command from the controller: its first line, its headers (in order), its body."""

    line: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @property
    def name(self) -> str:
        return self.line.split(" ", 1)[0].lower() if self.line else ""

    @property
    def arg(self) -> str:
        parts = self.line.split(" ", 1)
        return parts[1] if len(parts) > 1 else ""

    def header(self, name: str, default: str | None = None) -> str | None:
        """Case-insensitive header lookup (FreeSWITCH compares sendmsg headers that way)."""
        low = name.lower()
        for k, v in self.headers:
            if k.lower() == low:
                return v
        return default

    def text(self) -> str:
        """The command as it came in, without the terminating blank line."""
        out = self.line
        if self.headers:
            out += "\n" + "\n".join(f"{k}: {v}" for k, v in self.headers)
        if self.body:
            out += "\n\n" + self.body.decode("utf-8", errors="replace")
        return out


class CommandReader:
    """Incremental parser for controller -> FreeSWITCH commands (PROTOCOLS 1.3).

    Leading CR/LF are skipped, lines may end in CRLF, a `Content-Length` header brings a body.
    """

    MAX_BODY = 16 * 1024 * 1024

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[Command]:
        self._buf += data
        out: list[Command] = []
        while True:
            cmd = self._next()
            if cmd is None:
                return out
            out.append(cmd)

    def _next(self) -> Command | None:
        buf = self._buf.lstrip(b"\r\n")
        self._buf = buf
        if not buf:
            return None
        m = re.search(rb"\r?\n\r?\n", buf)
        if not m:
            return None
        head = buf[: m.start()].decode("utf-8", errors="replace")
        rest_at = m.end()
        lines = head.replace("\r\n", "\n").split("\n")
        headers: list[tuple[str, str]] = []
        for ln in lines[1:]:
            if ":" in ln:
                k, v = ln.split(":", 1)
                headers.append((k.strip(), v.strip()))
        length = 0
        for k, v in headers:
            if k.lower() == "content-length":
                try:
                    length = max(0, min(int(v), self.MAX_BODY))
                except ValueError:
                    length = 0
        if len(buf) - rest_at < length:
            return None
        body = buf[rest_at : rest_at + length]
        self._buf = buf[rest_at + length :]
        return Command(line=lines[0].strip(), headers=headers, body=body)


@dataclass
class Frame:
    """One FreeSWITCH -> controller message: outer headers and body (used by tests and tools)."""

    headers: list[tuple[str, str]]
    body: bytes
    raw: bytes

    def get(self, name: str, default: str | None = None) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v
        return default

    @property
    def content_type(self) -> str:
        return self.get("Content-Type", "") or ""


class FrameReader:
    """Incremental framer for FreeSWITCH's output: blank line, then Content-Length bytes."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        out: list[Frame] = []
        while True:
            end = self._buf.find(b"\n\n")
            if end < 0:
                return out
            head = self._buf[:end].decode("utf-8", errors="replace")
            headers = [_split_header(ln) for ln in head.split("\n") if ln]
            length = 0
            for k, v in headers:
                if k == "Content-Length":
                    length = int(v)
            total = end + 2 + length
            if len(self._buf) < total:
                return out
            raw = self._buf[:total]
            out.append(Frame(headers=headers, body=self._buf[end + 2 : total], raw=raw))
            self._buf = self._buf[total:]

    @property
    def pending(self) -> bytes:
        return self._buf


def _split_header(line: str) -> tuple[str, str]:
    if ": " in line:
        k, v = line.split(": ", 1)
        return k, v
    if ":" in line:
        k, v = line.split(":", 1)
        return k, v.strip()
    return line, ""


def parse_event_plain(payload: bytes) -> tuple[list[tuple[str, str]], bytes]:
    """Split a text/event-plain payload into (headers with raw encoded values, inner body).

    Parsed by the controller's own header parser (strict: a malformed line raises ProtocolError).
    """
    head, _, rest = payload.partition(b"\n\n")
    headers = parse_header_block(head, decode=False)
    length = next((int(v) for k, v in headers if k == "Content-Length"), 0)
    return headers, rest[:length]


def decoded(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """URL-decode every value (keeps order and duplicates)."""
    return [(k, url_decode(v)) for k, v in headers]
