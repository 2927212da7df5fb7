"""mod_audio_fork's side of the WebSocket, as seen in the captures (facts 10-22).

One `ForkClient` per media bug. It connects like libwebsockets does (the upgrade request is the
captured one byte for byte: `GET <path>`, Pragma, Cache-Control, Host without port, Origin, ...,
`Sec-WebSocket-Protocol: audio.drachtio.org`), then wsproto handles the frames: the metadata text
frame first (only when given), masked binary L16 frames paced by the call's media clock (one frame
per media frame, so the size follows the packetisation), `send_text`, `stop [text]` + close 1000.

Server messages: drachtio mode (`playAudio` -> temp file + `mod_audio_fork::play_audio`,
`killAudio` -> `kill_audio` + break the running playback, ...); jambonz streaming mode (binary
frames played to the caller through `StreamPlayout`, marks, `clearMarks`, killAudio clearing the
buffer, playAudio refused).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import gevent
import gevent.event
import numpy as np
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Ping,
    TextMessage,
)
from wsproto.utilities import RemoteProtocolError, generate_accept_token

if TYPE_CHECKING:
    from esl_agent.sim.freeswitch import FreeSwitchSimulator, SimulatedCall


SUBPROTOCOL = "audio.drachtio.org"
CONNECT_TIMEOUT_S = 5.0
AUDIO_FORK_USAGE = (
    "-USAGE: <uuid> [start | stop | send_text | pause | resume | graceful-shutdown ] "
    "[wss-url | path] [mono | mixed | stereo] [8000 | 16000 | 24000 | 32000 | 64000] "
    "[bugname] [metadata]\n"
)
MARK_REPLY = '{{"type": "mark", "data": {{"name":"{name}", "event": "{event}"}}}}'


def build_upgrade_request(url: str, key: str, subprotocol: str = SUBPROTOCOL,
                          basic_auth: str | None = None) -> bytes:
    """The HTTP upgrade exactly as libwebsockets 4.1 sent it in the captures (fact 10)."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    scheme = "https" if parts.scheme in ("wss", "https") else "http"
    lines = [
        f"GET {path} HTTP/1.1",
        "Pragma: no-cache",
        "Cache-Control: no-cache",
        f"Host: {host}",
        f"Origin: {scheme}://{host}",
    ]
    if basic_auth:
        lines.append(f"Authorization: Basic {basic_auth}")
    lines += [
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        f"Sec-WebSocket-Protocol: {subprotocol}",
        "Sec-WebSocket-Version: 13",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def resample(pcm: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Linear-interpolation resampler (enough for a simulator)."""
    if src_rate == dst_rate or pcm.size == 0:
        return pcm
    n_out = round(pcm.size * dst_rate / src_rate)
    x_old = np.arange(pcm.size)
    x_new = np.linspace(0, pcm.size - 1, n_out) if n_out > 1 else np.zeros(1)
    return np.interp(x_new, x_old, pcm.astype(np.float64)).round().astype("<i2")


@dataclass
class _Mark:
    name: str
    pos: int  # byte position in the received stream


class StreamPlayout:
    """The jambonz module's playout of streamed audio (facts 19-21), at the channel rate.

    Incoming bytes collect in an accumulator and move to the playout buffer in 80 ms steps; the
    sub-80 ms remainder stays behind (a killAudio does not clear it, fact 20). Playout starts once
    160 ms are buffered (paced audio: heard ~160 ms after the first frame) or when no more data
    came for 40 ms; a burst therefore plays on the next media tick (~18 ms, fact 19).
    """

    STEP_MS = 80
    PREBUFFER_MS = 160
    FLUSH_IDLE_S = 0.04

    def __init__(self, channel_rate: int, stream_rate: int, on_mark: Callable[[str, str], None],
                 now: Callable[[], float]) -> None:
        self.channel_rate = channel_rate
        self.stream_rate = stream_rate
        self._on_mark = on_mark
        self._now = now
        self._acc = bytearray()  # at stream rate
        self._play = bytearray()  # at channel rate
        self._received = 0  # bytes received (stream rate)
        self._moved = 0  # bytes moved to playout (stream rate)
        self._played_stream_bytes = 0.0
        self._marks: deque[_Mark] = deque()
        self.marks_disabled = stream_rate != 8000  # fact 21: never answered at 16 kHz
        self.playing = False
        self._last_rx = 0.0
        self.total_played_bytes = 0

    def _step_bytes(self) -> int:
        return self.stream_rate * 2 * self.STEP_MS // 1000

    def feed(self, data: bytes) -> None:
        self._acc += data
        self._received += len(data)
        self._last_rx = self._now()
        step = self._step_bytes()
        whole = (len(self._acc) // step) * step
        if whole:
            chunk = bytes(self._acc[:whole])
            del self._acc[:whole]
            self._moved += whole
            self._play += self._to_channel(chunk)

    def _to_channel(self, chunk: bytes) -> bytes:
        if self.stream_rate == self.channel_rate:
            return chunk
        pcm = np.frombuffer(chunk[: len(chunk) // 2 * 2], dtype="<i2")
        return resample(pcm, self.stream_rate, self.channel_rate).tobytes()

    def add_mark(self, name: str) -> None:
        self._marks.append(_Mark(name, self._received))

    def clear_marks(self) -> None:
        """`clearMarks`: pending marks are dropped unanswered."""
        self._marks.clear()

    def kill(self) -> None:
        """`killAudio`: drop the playout buffer (not the remainder), answer marks `cleared`."""
        self._play.clear()
        self.playing = False
        while self._marks:
            self._on_mark(self._marks.popleft().name, "cleared")

    def stop_play(self) -> None:
        """`stop_play`: stop on the next tick; pending marks are answered `playout` (capture)."""
        self._play.clear()
        self.playing = False
        while self._marks:
            self._on_mark(self._marks.popleft().name, "playout")

    def next_frame(self, n_samples: int) -> bytes | None:
        """Audio for this media tick, or None when nothing streams now."""
        want = n_samples * 2
        if not self.playing:
            prebuf = self.channel_rate * 2 * self.PREBUFFER_MS // 1000
            idle = self._now() - self._last_rx >= self.FLUSH_IDLE_S
            if len(self._play) >= prebuf or (self._play and idle):
                self.playing = True
            else:
                return None
        if not self._play:
            self.playing = False
            self._fire_marks(drained=True)
            return None
        out = bytes(self._play[:want])
        del self._play[:want]
        self.total_played_bytes += len(out)
        self._played_stream_bytes += len(out) * self.stream_rate / self.channel_rate
        self._fire_marks(drained=not self._play)
        if len(out) < want:
            out += b"\x00" * (want - len(out))
        return out

    def _fire_marks(self, drained: bool) -> None:
        played_pos = self._moved - (len(self._play) * self.stream_rate / self.channel_rate)
        while self._marks:
            m = self._marks[0]
            reached = played_pos >= m.pos or (drained and m.pos <= self._received)
            if not reached:
                return
            self._marks.popleft()
            if not self.marks_disabled:
                self._on_mark(m.name, "playout")


class ForkClient:
    """One mod_audio_fork media bug: WebSocket client + the module's message handling."""

    def __init__(
        self,
        call: SimulatedCall,
        bugname: str,
        url: str,
        mix: str,
        rate: int,
        metadata: str | None,
        *,
        streaming: bool = False,
        stream_rate: int = 8000,
        jambonz: bool = False,
        fail_connect: bool = False,
        subprotocol: str = SUBPROTOCOL,
        buffer_secs: int = 2,
    ) -> None:
        self.call = call
        self.bugname = bugname
        self.url = url
        self.mix = mix
        self.rate = rate
        self.metadata = metadata
        self.streaming = streaming
        self.jambonz = jambonz
        self.fail_connect = fail_connect
        self.subprotocol = subprotocol
        self.connected = False
        self.closed = False
        self.failed = False
        self.paused = False
        self._sock: socket.socket | None = None
        self._ws: Connection | None = None
        self._out: deque[bytes] = deque()
        self._out_bytes = 0
        self._out_ready = gevent.event.Event()
        self._max_buffer = buffer_secs * rate * 2 * (2 if mix == "stereo" else 1)
        self._overrun_fired = False
        self._marks_cleared = False
        self._greenlets: list[gevent.Greenlet] = []
        self.frames_sent = 0
        self.playout: StreamPlayout | None = None
        if streaming:
            self.playout = StreamPlayout(call.sample_rate, stream_rate, self._send_mark,
                                         call.recording.now)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._greenlets.append(gevent.spawn(self._run))

    def _run(self) -> None:
        try:
            self._connect()
        except Exception as exc:  # any connect problem is lws's "Unable to connect"
            self.call.log.info("fork %s connect failed: %s", self.bugname, exc.__class__.__name__)
            self.failed = True
            self._close_socket()
            self.call.record("ws", dir="C->S", what="connect_failed", bug=self.bugname)
            self.call.fire_custom("mod_audio_fork::connect_failed",
                                  body='{"reason":"Unable to connect"}')
            return
        self.connected = True
        self.call.fire_custom("mod_audio_fork::connect")
        if self.metadata is not None:
            self._send_now(TextMessage(data=self.metadata), summary=self.metadata)
        self._greenlets.append(gevent.spawn(self._writer))
        self._reader()

    def _connect(self) -> None:
        if self.fail_connect:
            raise ConnectionRefusedError("fault switch: fork connect fails")
        parts = urlsplit(self.url)
        secure = parts.scheme in ("wss", "https")
        port = parts.port or (443 if secure else 80)
        sock = socket.create_connection((parts.hostname or "127.0.0.1", port),
                                        timeout=CONNECT_TIMEOUT_S)
        if secure:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            sock = ctx.wrap_socket(sock, server_hostname=parts.hostname)
        self._sock = sock
        key = base64.b64encode(os.urandom(16)).decode()
        user = self.call.get_var("MOD_AUDIO_BASIC_AUTH_USERNAME")
        pw = self.call.get_var("MOD_AUDIO_BASIC_AUTH_PASSWORD")
        auth = base64.b64encode(f"{user}:{pw}".encode()).decode() if user and pw else None
        request = build_upgrade_request(self.url, key, self.subprotocol, auth)
        sock.sendall(request)
        self.call.record("ws", dir="C->S", what="upgrade", bug=self.bugname,
                         request=request.decode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during upgrade")
            buf += chunk
            if len(buf) > 65536:
                raise ConnectionError("oversized upgrade response")
        head, rest = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        if not lines[0].startswith("HTTP/1.1 101"):
            raise ConnectionError(f"upgrade refused: {lines[0]!r}")
        hdrs = {ln.split(":", 1)[0].strip().lower(): ln.split(":", 1)[1].strip()
                for ln in lines[1:] if ":" in ln}
        if hdrs.get("sec-websocket-accept") != generate_accept_token(key.encode()).decode():
            raise ConnectionError("bad Sec-WebSocket-Accept")
        sock.settimeout(None)
        self._ws = Connection(ConnectionType.CLIENT, trailing_data=rest)

    # ------------------------------------------------------------------ sending
    def _send_now(self, event: Any, summary: str | None = None) -> None:
        if self._ws is None or self._sock is None or self.closed:
            return
        data = self._ws.send(event)
        if isinstance(event, TextMessage):
            self.call.record("ws", dir="C->S", op="text", len=len(event.data.encode()),
                             text=summary, bug=self.bugname)
        try:
            self._sock.sendall(data)
        except OSError:
            self._on_socket_gone()

    def push_audio(self, caller: bytes, played: bytes) -> None:
        """One media frame from the call's clock (channel rate); queued for the writer greenlet."""
        if not self.connected or self.closed or self.paused:
            return
        frame = self._mix(caller, played)
        if self._out_bytes + len(frame) > self._max_buffer:
            if not self._overrun_fired:
                self._overrun_fired = True
                self.call.fire_custom("mod_audio_fork::buffer_overrun")
            return
        self._out.append(frame)
        self._out_bytes += len(frame)
        self._out_ready.set()

    def _mix(self, caller: bytes, played: bytes) -> bytes:
        rate = self.call.sample_rate
        a = np.frombuffer(caller, dtype="<i2")
        if self.mix == "mono":
            out = a
        else:
            b = np.frombuffer(played, dtype="<i2")
            if self.mix == "mixed":
                out = np.clip(a.astype(np.int32) + b, -32768, 32767).astype("<i2")
            else:  # stereo: left = caller (read), right = played (write)
                a2, b2 = resample(a, rate, self.rate), resample(b, rate, self.rate)
                st = np.empty(a2.size * 2, dtype="<i2")
                st[0::2], st[1::2] = a2, b2
                return st.tobytes()
        return resample(out, rate, self.rate).tobytes()

    def _writer(self) -> None:
        while not self.closed:
            self._out_ready.wait()
            self._out_ready.clear()
            while self._out and not self.closed:
                frame = self._out.popleft()
                self._out_bytes -= len(frame)
                self._send_now(BytesMessage(data=frame))
                self.frames_sent += 1
                if self.frames_sent <= 3 or self.frames_sent % 50 == 0:
                    self.call.record("ws", dir="C->S", op="binary", len=len(frame),
                                     n=self.frames_sent, bug=self.bugname)

    def graceful_shutdown(self) -> None:
        """`graceful-shutdown`: stop sending audio and send one zero-length binary frame."""
        self.paused = True
        self._send_now(BytesMessage(data=b""))

    def send_text(self, text: str) -> None:
        self._send_now(TextMessage(data=text), summary=text)

    def _send_mark(self, name: str, event: str) -> None:
        if self._marks_cleared:
            return
        self.send_text(MARK_REPLY.format(name=name, event=event))

    def stop(self, text: str | None = None) -> None:
        """`stop [text]`: optional final text frame, then a normal close (1000); no event."""
        if text is not None and self.connected and not self.closed:
            self.send_text(text)
        self._close(1000, record="stop")

    def stop_play(self) -> None:
        if self.playout is not None:
            self.playout.stop_play()
            self.call.end_stream_segment(interrupted=True)

    def _close(self, code: int, record: str) -> None:
        if self.closed:
            return
        if self._ws is not None and self._ws.state == ConnectionState.OPEN:
            self._send_now(CloseConnection(code=code))
            self.call.record("ws", dir="C->S", op="close", code=code, why=record, bug=self.bugname)
        self.closed = True
        self._out_ready.set()
        self.call.end_stream_segment(interrupted=True)
        self._greenlets.append(gevent.spawn_later(0.5, self._close_socket))

    def shutdown(self) -> None:
        """At hangup/cleanup: close normally and stop every greenlet."""
        self._close(1000, record="hangup")
        self._close_socket()
        cur = gevent.getcurrent()
        others = [g for g in self._greenlets if g is not cur and not g.dead]
        self._greenlets = []
        gevent.killall(others, block=False)

    def _close_socket(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def _on_socket_gone(self) -> None:
        if not self.closed:
            self.closed = True
            self._out_ready.set()
            self._close_socket()

    # ------------------------------------------------------------------ receiving
    def _reader(self) -> None:
        text_parts: list[str] = []
        bin_parts: list[bytes] = []
        while not self.closed and self._sock is not None and self._ws is not None:
            try:
                data = self._sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                if not self.closed:
                    self.closed = True
                    self._out_ready.set()
                    self.call.record("ws", dir="S->C", what="tcp_closed", bug=self.bugname)
                    self.call.fire_custom("mod_audio_fork::disconnect")
                return
            self._ws.receive_data(data)
            try:
                events = list(self._ws.events())
            except RemoteProtocolError as exc:  # lws drops a connection that breaks the protocol
                self.call.record("ws", dir="S->C", what="protocol_error", error=str(exc)[:200],
                                 bug=self.bugname)
                self.closed = True
                self._out_ready.set()
                self.call.end_stream_segment(interrupted=True)
                self._close_socket()
                self.call.fire_custom("mod_audio_fork::disconnect")
                return
            for ev in events:
                if isinstance(ev, TextMessage):
                    text_parts.append(ev.data)
                    if ev.message_finished:
                        self._on_text("".join(text_parts))
                        text_parts = []
                elif isinstance(ev, BytesMessage):
                    bin_parts.append(bytes(ev.data))
                    if ev.message_finished:
                        self._on_binary(b"".join(bin_parts))
                        bin_parts = []
                elif isinstance(ev, Ping):
                    self._send_now(ev.response())
                elif isinstance(ev, CloseConnection):
                    if self.closed:  # the echo of our own close (stop / hangup): no event
                        self._close_socket()
                    else:
                        self._on_server_close(ev)
                    return

    def _on_server_close(self, ev: CloseConnection) -> None:
        """Fact 14: echo the close and fire `mod_audio_fork::disconnect` (no body)."""
        self.call.record("ws", dir="S->C", op="close", code=ev.code, reason=ev.reason,
                         bug=self.bugname)
        if self._ws is not None and self._sock is not None \
                and self._ws.state == ConnectionState.REMOTE_CLOSING:
            try:
                self._sock.sendall(self._ws.send(ev.response()))
            except OSError:
                pass
        self.closed = True
        self._out_ready.set()
        self.call.end_stream_segment(interrupted=True)
        self._close_socket()
        self.call.fire_custom("mod_audio_fork::disconnect")

    def _on_binary(self, data: bytes) -> None:
        self.call.record("ws", dir="S->C", op="binary", len=len(data), bug=self.bugname)
        if self.playout is None:
            return  # drachtio: discarded; jambonz without streaming: buffered, never played
        self.playout.feed(data[: len(data) // 2 * 2])

    def _on_text(self, text: str) -> None:
        self.call.record("ws", dir="S->C", op="text", len=len(text.encode()), text=text[:300],
                         bug=self.bugname)
        try:
            msg = json.loads(text)
        except ValueError:
            self.call.log.info("fork %s: ignoring non-JSON text frame", self.bugname)
            self.call.record("ws_ignored", reason="not JSON", bug=self.bugname)
            return
        if not isinstance(msg, dict):
            self.call.record("ws_ignored", reason="not an object", bug=self.bugname)
            return
        kind = msg.get("type", "json")
        data = msg.get("data")
        if kind == "playAudio":
            self._play_audio(data)
        elif kind == "killAudio":
            self.call.fire_custom("mod_audio_fork::kill_audio")
            if self.playout is not None:
                self.playout.kill()
                self.call.end_stream_segment(interrupted=True)
            self.call.break_playback(reason="killAudio")
        elif kind == "mark" and self.playout is not None:
            name = (data or {}).get("name") if isinstance(data, dict) else None
            if name and not self._marks_cleared:
                self.playout.add_mark(str(name))
        elif kind == "clearMarks" and self.playout is not None:
            self.playout.clear_marks()
            self._marks_cleared = True  # fact 21: later marks are never answered
        elif kind in ("transcription", "transfer", "error"):
            self.call.fire_custom(f"mod_audio_fork::{kind}", body=_compact(data))
        elif kind == "disconnect":
            self.call.fire_custom("mod_audio_fork::disconnect",
                                  body=_compact(data) if data is not None else None)
        elif kind == "json":
            self.call.fire_custom("mod_audio_fork::json", body=_compact(msg))
        else:
            self.call.record("ws_ignored", reason=f"unknown type {kind!r}", bug=self.bugname)

    def _play_audio(self, data: Any) -> None:
        """Fact 13 (drachtio): write the audio to a temp file and fire play_audio with `file`."""
        if self.streaming:
            self.call.record("ws_ignored", reason="playAudio refused while streaming",
                             bug=self.bugname)
            return
        if not isinstance(data, dict):
            self.call.record("ws_ignored", reason="playAudio without data", bug=self.bugname)
            return
        ctype = data.get("audioContentType")
        out = {k: v for k, v in data.items() if k != "audioContent"}
        ext = None
        if ctype == "raw":
            ext = {8000: ".r8", 16000: ".r16", 24000: ".r24", 32000: ".r32", 48000: ".r48",
                   64000: ".r64"}.get(data.get("sampleRate"), ".r16")
        elif ctype in ("wave", "wav"):
            ext = ".wav"
        if ext is not None:
            try:
                audio = base64.b64decode(data.get("audioContent") or "")
            except ValueError:
                audio = b""
            path = self.call.new_temp_file(ext)
            with open(path, "wb") as fh:
                fh.write(audio)
            out["file"] = path
        self.call.fire_custom("mod_audio_fork::play_audio", body=_compact(out))


def _compact(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


# ----------------------------------------------------------------------------- the API


def audio_fork_api(sim: FreeSwitchSimulator, arg: str) -> str:
    """`api uuid_audio_fork ...` as mod_audio_fork parses and answers it (facts 11, 15, 17, 23)."""
    tokens = arg.strip().split(" ")
    if len(tokens) < 2:
        return AUDIO_FORK_USAGE
    call = sim.calls_by_uuid.get(tokens[0])
    if call is None or call.answer_state == "hangup" or call._finished:
        return "-ERR Operation Failed\n"
    sub = tokens[1]
    if sub == "start":
        return _fork_start(sim, call, tokens)
    if sub == "stop":
        return _fork_stop(call, tokens)
    if sub == "send_text":
        rest = tokens[2:]
        if not rest:
            return AUDIO_FORK_USAGE
        bug = "audio_fork"
        if len(rest) > 1 and not rest[0].startswith(("{", "[")):
            bug, rest = rest[0], rest[1:]
        fork = call.forks.get(bug)
        if fork is None:
            return "-ERR Operation Failed\n"
        fork.send_text(" ".join(rest))
        return "+OK Success\n"
    if sub in ("pause", "resume"):
        fork = call.forks.get(tokens[2] if len(tokens) > 2 else "audio_fork")
        if fork is None:
            return "-ERR Operation Failed\n"
        fork.paused = sub == "pause"
        return "+OK Success\n"
    if sub == "stop_play" and sim.fork_mode == "stream":
        for fork in call.forks.values():
            fork.stop_play()
        return "+OK Success\n"
    if sub == "graceful-shutdown":
        fork = call.forks.get(tokens[2] if len(tokens) > 2 else "audio_fork")
        if fork is None:
            return "-ERR Operation Failed\n"
        fork.graceful_shutdown()
        return "+OK Success\n"
    return AUDIO_FORK_USAGE

def _fork_start(sim: FreeSwitchSimulator, call: SimulatedCall, tokens: list[str]) -> str:
    if len(tokens) < 5:
        return AUDIO_FORK_USAGE
    url, mix, rate_tok = tokens[2], tokens[3], tokens[4]
    if mix not in ("mono", "mixed", "stereo"):
        return "-ERR no reply\n"
    rate = _parse_rate(rate_tok)
    rest = [_unquote(t) for t in tokens[5:]]
    streaming = False
    stream_rate = 8000
    bug = "audio_fork"
    metadata: str | None = None
    if sim.fork_mode == "stream" and len(tokens) >= 10:
        bug = rest[0] or "audio_fork"
        metadata = rest[1] or None
        streaming = rest[2] == "true" and rest[3] == "true"
        stream_rate = int(rest[4]) if rest[4].isdigit() else 8000
    elif len(rest) == 1:
        if rest[0].startswith(("{", "[")):
            metadata = rest[0]
        else:
            bug = rest[0] or "audio_fork"
    elif len(rest) >= 2:
        bug = rest[0] or "audio_fork"
        metadata = " ".join(rest[1:]) or None
    if metadata is not None and not metadata.startswith(("{", "[")):
        metadata = None
    if call.answer_state == "ringing" and sim.crash_on_early_fork:
        gevent.spawn_later(0.01, sim._crash,
                           "uuid_audio_fork start on a channel that was not answered")
        return "+OK Success\n"
    if bug in call.forks:
        return "-ERR Operation Failed\n"
    fork = ForkClient(
        call, bug, url, mix, rate, metadata, streaming=streaming, stream_rate=stream_rate,
        jambonz=sim.fork_mode == "stream", fail_connect=call.faults.fork_connect_fails,
    )
    call.forks[bug] = fork
    call.record("fork_start", bug=bug, url=url, mix=mix, rate=rate, streaming=streaming,
                metadata=metadata)
    fork.start()
    return "+OK Success\n"

def _fork_stop(call: SimulatedCall, tokens: list[str]) -> str:
    rest = tokens[2:]
    bug = "audio_fork"
    text: str | None = None
    if len(rest) == 1:
        if rest[0].startswith(("{", "[")):
            text = rest[0]
        else:
            bug = rest[0]
    elif len(rest) >= 2:
        bug, text = rest[0], " ".join(rest[1:])
    fork = call.forks.pop(bug, None)
    if fork is None:
        return "-ERR Operation Failed\n"
    call.record("fork_stop", bug=bug, text=text)
    fork.stop(text)
    for path in list(call._temp_files):
        try:
            Path(path).unlink()
        except OSError:
            pass
    return "+OK Success\n"


def _parse_rate(tok: str) -> int:
    tok = tok.lower()
    if tok.endswith("k") and tok[:-1].isdigit():
        return int(tok[:-1]) * 1000
    return int(tok) if tok.isdigit() else 8000


def _unquote(tok: str) -> str:
    if len(tok) >= 2 and tok[0] == tok[-1] == "'":
        return tok[1:-1]
    return tok
