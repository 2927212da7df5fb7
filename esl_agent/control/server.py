"""The outbound event-socket server: FreeSWITCH's `socket` application connects here per call.

Dialplan: `<action application="socket" data="127.0.0.1:8084 async full"/>`. Each connection
gets our greenswitch session; `connect` is sent at once (a listener that never sends it leaves
the channel parked, PROTOCOLS.md 1.8), then a `Call` runs in the connection's greenlet. At
capacity or while draining the connection is released with `exit`, so the dialplan continues
with its fallback action.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

import gevent
from gevent.server import StreamServer

from esl_agent.control.session import EslSession
from esl_agent.errors import EslAgentError

log = logging.getLogger("esl_agent.control.server")


class EslServer:
    """Accepts outbound event-socket connections and runs `on_session(session)` for each.

    Args:
        listen: (host, port); port 0 picks a free port (`.port`).
        on_session: runs the call; called in the connection's own greenlet after `connect`.
        admit: returns False to turn a call away (capacity, draining).
        connect_timeout: deadline for FreeSWITCH's reply to `connect`.
    """

    def __init__(
        self,
        listen: tuple[str, int],
        on_session: Callable[[EslSession], None],
        admit: Callable[[], bool] = lambda: True,
        *,
        command_timeout: float = 5.0,
        connect_timeout: float = 5.0,
    ) -> None:
        self._on_session = on_session
        self._admit = admit
        self._command_timeout = command_timeout
        self._connect_timeout = connect_timeout
        self._server = StreamServer(listen, self._handle)
        self.accepted = 0
        self.turned_away = 0
        self.failed_connects = 0

    @property
    def port(self) -> int:
        return self._server.server_port

    def start(self) -> None:
        self._server.start()
        log.info("event socket listening on %s:%s", *self._server.address[:2])

    def stop_accepting(self) -> None:
        """Close the listening socket; running calls go on."""
        self._server.close()

    def stop(self, timeout: float = 1.0) -> None:
        self._server.stop(timeout=timeout)

    def _handle(self, sock, address) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small, latency-bound commands
        session = EslSession(address, sock, command_timeout=self._command_timeout)
        try:
            session.connect(timeout=self._connect_timeout)
        except (EslAgentError, gevent.Timeout) as exc:
            self.failed_connects += 1
            log.warning("connect with %s failed: %s", address, exc)
            session.stop()
            return
        if not self._admit():
            self.turned_away += 1
            log.warning("[%s] turning call away (capacity or draining)", session.uuid)
            session.stop()
            return
        self.accepted += 1
        try:
            self._on_session(session)
        finally:
            session.stop()
