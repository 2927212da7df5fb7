"""The WebSocket endpoint mod_audio_fork connects to: wsproto framing on gevent sockets.

FreeSWITCH opens `GET /fork/<call-uuid>` with subprotocol `audio.drachtio.org` (fixtures README
fact 10), sends the metadata as the first text frame when one was given (fact 11), then raw L16
binary frames whose size follows the caller's packetisation (fact 12). The endpoint routes them
to the `ForkSink` registered for that UUID and carries audio and control messages back.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Protocol

import gevent
import gevent.lock
from gevent.server import StreamServer
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

log = logging.getLogger("esl_agent.media.fork")

SUBPROTOCOL = "audio.drachtio.org"
PATH_PREFIX = "/fork/"
_RECV_BYTES = 65536


class ForkSink(Protocol):
    """What a call offers the fork endpoint."""

    def fork_attached(self, conn: ForkConnection) -> None: ...

    def fork_text(self, text: str) -> None: ...

    def fork_audio(self, pcm: bytes) -> None: ...

    def fork_closed(self, reason: str) -> None: ...


class ForkConnection:
    """One fork WebSocket. Sends are serialised; `closed` tells whether FreeSWITCH is still there."""

    def __init__(self, sock, call_uuid: str, ws: WSConnection) -> None:
        self.sock = sock
        self.uuid = call_uuid
        self._ws = ws
        self._lock = gevent.lock.Semaphore()
        self.closed = False
        self.bytes_out = 0
        self.frames_out = 0

    def _write(self, data: bytes, still_wanted: Callable[[], bool] | None = None) -> bool:
        if self.closed:
            return False
        try:
            with self._lock:
                # Re-checked under the lock: a killAudio written meanwhile makes this audio stale.
                if still_wanted is not None and not still_wanted():
                    return False
                self.sock.sendall(data)
        except OSError:
            self.closed = True
            return False
        return True

    def send_audio(self, pcm: bytes, still_wanted: Callable[[], bool] | None = None) -> bool:
        """Send L16 audio as one binary frame (streaming mode plays it; FreeSWITCH paces it).

        `still_wanted` is checked right before the bytes go out, after waiting for the write lock.
        """
        if self.closed or not pcm:
            return False
        ok = self._write(self._ws.send(BytesMessage(data=pcm)), still_wanted)
        if ok:
            self.bytes_out += len(pcm)
            self.frames_out += 1
        return ok

    def send_text(self, text: str) -> bool:
        """Send one JSON control message (playAudio, killAudio, mark...)."""
        return self._write(self._ws.send(TextMessage(data=text)))

    def close(self, code: int = 1000, reason: str = "") -> None:
        if self.closed:
            return
        try:
            self._write(self._ws.send(CloseConnection(code=code, reason=reason)))
        except LocalProtocolError:
            pass
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass


class ForkServer:
    """Accepts fork WebSockets and hands each to the sink registered for its call UUID.

    Args:
        listen: (host, port); port 0 picks a free one (see `.port`).
        lookup: returns the ForkSink for a call UUID, or None for an unknown call.
        max_message_bytes: a single message larger than this closes the socket (1009).
    """

    def __init__(
        self,
        listen: tuple[str, int],
        lookup: Callable[[str], ForkSink | None],
        max_message_bytes: int = 1 << 20,
    ) -> None:
        self._lookup = lookup
        self._max = max_message_bytes
        self._server = StreamServer(listen, self._handle)
        self.connections = 0
        self.rejected = 0

    @property
    def port(self) -> int:
        return self._server.server_port

    def start(self) -> None:
        self._server.start()
        log.info("fork endpoint listening on %s:%s", *self._server.address[:2])

    def stop(self) -> None:
        self._server.stop(timeout=1)

    # ------------------------------------------------------------------ per connection

    def _handle(self, sock, address) -> None:
        # Real-time media: a small killAudio or audio frame must not wait for Nagle's algorithm.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ws = WSConnection(ConnectionType.SERVER)
        conn: ForkConnection | None = None
        sink: ForkSink | None = None
        reason = "closed by FreeSWITCH"
        text_parts: list[str] = []
        message_bytes = 0
        carry = b""
        try:
            while True:
                try:
                    data = sock.recv(_RECV_BYTES)
                except OSError:
                    reason = "socket error"
                    break
                if not data:
                    reason = "connection dropped"
                    break
                ws.receive_data(data)
                for event in ws.events():
                    if isinstance(event, Request):
                        conn, sink = self._upgrade(sock, ws, event)
                        if sink is None:
                            return
                    elif isinstance(event, BytesMessage):
                        message_bytes += len(event.data)
                        if message_bytes > self._max:
                            raise _TooBig(message_bytes)
                        if event.message_finished:
                            message_bytes = 0
                        chunk = carry + bytes(event.data) if carry else bytes(event.data)
                        if len(chunk) & 1:  # L16 needs whole samples; keep the odd byte for later
                            chunk, carry = chunk[:-1], chunk[-1:]
                        else:
                            carry = b""
                        if chunk and sink is not None:
                            sink.fork_audio(chunk)
                    elif isinstance(event, TextMessage):
                        text_parts.append(event.data)
                        message_bytes += len(event.data)
                        if message_bytes > self._max:
                            raise _TooBig(message_bytes)
                        if event.message_finished:
                            text, text_parts, message_bytes = "".join(text_parts), [], 0
                            if sink is not None:
                                sink.fork_text(text)
                    elif isinstance(event, Ping):
                        sock.sendall(ws.send(event.response()))
                    elif isinstance(event, CloseConnection):
                        reason = f"closed by FreeSWITCH ({event.code})"
                        try:
                            sock.sendall(ws.send(event.response()))
                        except (OSError, LocalProtocolError):
                            pass
                        return
        except _TooBig as exc:
            log.warning("[%s] fork message of %d bytes exceeds the limit; closing", conn and conn.uuid, exc.size)
            reason = "message too big"
            if conn is not None:
                conn.close(1009, "message too big")
        except RemoteProtocolError as exc:
            log.warning("[%s] fork protocol error: %s", conn and conn.uuid, exc)
            reason = f"protocol error: {exc}"
            try:
                sock.sendall(ws.send(RejectConnection(status_code=400)) if conn is None
                             else ws.send(CloseConnection(code=1002)))
            except (OSError, LocalProtocolError):
                pass
        finally:
            if conn is not None:
                conn.closed = True
            if sink is not None:
                try:
                    sink.fork_closed(reason)
                except Exception:
                    log.exception("[%s] fork_closed handler failed", conn and conn.uuid)
            try:
                sock.close()
            except OSError:
                pass

    def _upgrade(self, sock, ws: WSConnection, request: Request) -> tuple[ForkConnection | None, ForkSink | None]:
        path = request.target.split("?", 1)[0]
        call_uuid = path[len(PATH_PREFIX):] if path.startswith(PATH_PREFIX) else ""
        sink = self._lookup(call_uuid) if call_uuid else None
        if sink is None:
            self.rejected += 1
            log.warning("[%s] fork connection for an unknown call (path %s): rejected", call_uuid or "-", path[:80])
            try:
                sock.sendall(ws.send(RejectConnection(status_code=404)))
            except (OSError, LocalProtocolError):
                pass
            return None, None
        sub = SUBPROTOCOL if SUBPROTOCOL in request.subprotocols else None
        sock.sendall(ws.send(AcceptConnection(subprotocol=sub)))
        conn = ForkConnection(sock, call_uuid, ws)
        self.connections += 1
        sink.fork_attached(conn)
        return conn, sink


class _TooBig(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size
