"""Event-socket framing from the controller's side: bytes in, whole messages out.

FreeSWITCH sends header blocks ended by a blank line, followed by `Content-Length` bytes of body
when that header is present (PROTOCOLS.md 1.3). Header order varies by message type, so framing
looks only at the blank line and Content-Length. Plain events carry their own header block in the
body, and some of those (BACKGROUND_JOB, every `mod_audio_fork::*` JSON event) carry an inner
Content-Length and an inner body of their own (fixtures README fact 4): greenswitch 0.0.19 mangles
those, this parser does not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote

from esl_agent.errors import ProtocolError

MAX_HEADER_BYTES = 1 << 20  # a CHANNEL_DATA block is ~7 KB; 1 MB means garbage
MAX_BODY_BYTES = 16 << 20  # FreeSWITCH's own limit for bodies


@dataclass
class EslMessage:
    """One framed message: its headers (URL-decoded values, in wire order) and raw body."""

    headers: dict[str, str]
    body: bytes = b""

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    @property
    def reply_text(self) -> str:
        """Reply-Text of a command/reply, or the body of an api/response, stripped of the newline."""
        if self.content_type == "api/response":
            return self.body.decode("utf-8", "replace").rstrip("\n")
        return self.headers.get("Reply-Text", "").rstrip("\n")


@dataclass
class EslEvent:
    """A parsed event: headers (URL-decoded) and the event's own body (e.g. the fork's JSON)."""

    headers: dict[str, str]
    body: bytes = b""
    raw_headers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.headers.get("Event-Name", "")

    @property
    def subclass(self) -> str:
        return self.headers.get("Event-Subclass", "")

    @property
    def uuid(self) -> str:
        return self.headers.get("Unique-ID", "")

    def get(self, key: str, default: str = "") -> str:
        return self.headers.get(key, default)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def parse_header_block(block: bytes, *, decode: bool = True) -> list[tuple[str, str]]:
    """Split a header block into (name, value) pairs; values URL-decoded unless decode=False.

    A line without ': ' is a protocol error, except an empty value written as 'Name:' (greenswitch
    issue #67: blank values must not break parsing).
    """
    pairs: list[tuple[str, str]] = []
    text = block.decode("utf-8", "replace")
    for line in text.split("\n"):
        line = line.rstrip("\r")
        if not line:
            continue
        name, sep, value = line.partition(": ")
        if not sep:
            if line.endswith(":") and " " not in line:
                name, value = line[:-1], ""
            else:
                raise ProtocolError(f"malformed header line: {line[:80]!r}")
        if not name or any(c in name for c in " \t"):
            raise ProtocolError(f"malformed header name: {name[:80]!r}")
        pairs.append((name, unquote(value) if decode else value))
    return pairs


def _content_length(headers: dict[str, str], where: str) -> int:
    raw = headers.get("Content-Length")
    if raw is None:
        return 0
    if not raw.strip().isdigit():
        raise ProtocolError(f"{where}: Content-Length is not a number: {raw[:40]!r}")
    length = int(raw)
    if length > MAX_BODY_BYTES:
        raise ProtocolError(f"{where}: Content-Length {length} exceeds {MAX_BODY_BYTES}")
    return length


def parse_event(payload: bytes) -> EslEvent:
    """Parse the payload of a `text/event-plain` message, including an inner body (fact 4)."""
    head, sep, rest = payload.partition(b"\n\n")
    pairs = parse_header_block(head)
    headers = dict(pairs)
    body = b""
    if sep:
        inner = _content_length(headers, "event")
        if inner:
            if len(rest) < inner:
                raise ProtocolError(f"event body truncated: {len(rest)} of {inner} bytes")
            body = rest[:inner]
    if "Event-Name" not in headers:
        raise ProtocolError("event without Event-Name")
    return EslEvent(headers=headers, body=body, raw_headers=pairs)


class EslFrameParser:
    """Incremental framer: `feed(bytes)` returns the messages completed so far.

    After a ProtocolError the stream is out of sync; the owner must drop the connection.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pending: EslMessage | None = None
        self._need = 0

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[EslMessage]:
        self._buf += data
        out: list[EslMessage] = []
        while True:
            if self._pending is not None:
                if len(self._buf) < self._need:
                    break
                msg = self._pending
                msg.body = bytes(self._buf[: self._need])
                del self._buf[: self._need]
                self._pending = None
                out.append(msg)
                continue
            # FreeSWITCH may send stray newlines between messages; skip them.
            while self._buf[:1] in (b"\n", b"\r"):
                del self._buf[:1]
            end = self._buf.find(b"\n\n")
            if end < 0:
                if len(self._buf) > MAX_HEADER_BYTES:
                    raise ProtocolError(f"header block larger than {MAX_HEADER_BYTES} bytes")
                break
            block = bytes(self._buf[:end])
            del self._buf[: end + 2]
            headers = dict(parse_header_block(block))
            if "Content-Type" not in headers:
                raise ProtocolError(f"message without Content-Type: {block[:80]!r}")
            length = _content_length(headers, headers["Content-Type"])
            msg = EslMessage(headers=headers)
            if length:
                self._pending, self._need = msg, length
            else:
                out.append(msg)
        return out

    def check_eof(self) -> None:
        """Call at EOF: raise if a message was cut off (a lying Content-Length, a dropped peer)."""
        if self._pending is not None:
            raise ProtocolError(f"connection closed inside a body ({len(self._buf)} of {self._need} bytes)")
        if self._buf.strip():
            raise ProtocolError(f"connection closed inside a header block ({len(self._buf)} bytes)")
