"""The controller process: event-socket server, fork endpoint and ops endpoint wired together.

`Controller(settings, handler_factory)` owns the three servers and the table of live calls.
`serve_forever()` runs until SIGTERM/SIGINT, then drains: it stops accepting, lets calls finish
for `server.drain_seconds`, then ends the rest through their fallback.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable

import gevent
import gevent.event

from esl_agent.config import Settings, parse_hostport
from esl_agent.control.call import Call, HandlerFactory
from esl_agent.control.server import EslServer
from esl_agent.control.session import EslSession
from esl_agent.media.fork_server import ForkServer, ForkSink
from esl_agent.ops.health import OpsServer
from esl_agent.ops.metrics import TurnMetrics, make_registry

log = logging.getLogger("esl_agent.app")


class Controller:
    """One process, many calls: call control and media together."""

    def __init__(
        self,
        settings: Settings,
        handler_factory: HandlerFactory,
        *,
        apology_file: str | None = None,
        dial_guard: Callable[[str, str], tuple[bool, str]] | None = None,
        with_ops_server: bool = True,
        on_call_end: Callable[[Call], object] | None = None,
        outbound: Callable[[bytes, str | None, str], tuple[int, dict]] | None = None,
    ) -> None:
        self.settings = settings
        self.handler_factory = handler_factory
        self.apology_file = apology_file
        self.dial_guard = dial_guard
        self.on_call_end = on_call_end
        self.calls: dict[str, Call] = {}
        self.draining = False
        self.idle = gevent.event.Event()
        self.idle.set()
        self._totals = dict.fromkeys(("frames_in", "frames_out", "bytes_in", "bytes_out", "commands_failed"), 0)
        self.calls_total = 0
        self.fallbacks = 0
        src = settings.source
        self.fork_server = ForkServer(parse_hostport(settings.server.fork_listen, src, "server.fork_listen"),
                                      self._fork_sink)
        self.esl_server = EslServer(parse_hostport(settings.server.esl_listen, src, "server.esl_listen"),
                                    self._run_call, self._admit, command_timeout=settings.server.command_timeout)
        self.registry = make_registry(self)
        self.turn_metrics = TurnMetrics(self.registry)
        self.ops_server = (OpsServer(parse_hostport(settings.server.http_listen, src, "server.http_listen"),
                                     self.health, self.registry, outbound) if with_ops_server else None)
        self.fork_url = settings.server.fork_url

    # ------------------------------------------------------------------ servers

    def start(self) -> None:
        self.fork_server.start()
        host, port = parse_hostport(self.settings.server.fork_listen, self.settings.source, "server.fork_listen")
        if port == 0:  # tests and the demo bind port 0: tell FreeSWITCH the real port
            self.fork_url = f"ws://{host}:{self.fork_server.port}"
        self.esl_server.start()
        if self.ops_server is not None:
            self.ops_server.start()

    @property
    def esl_port(self) -> int:
        return self.esl_server.port

    def serve_forever(self) -> None:
        """Run until SIGTERM or SIGINT, then drain and stop."""
        stop = gevent.event.Event()
        gevent.signal_handler(signal.SIGTERM, stop.set)
        gevent.signal_handler(signal.SIGINT, stop.set)
        self.start()
        log.info("controller ready (esl %s, fork %s)", self.settings.server.esl_listen, self.fork_url)
        stop.wait()
        self.shutdown()

    def shutdown(self, drain_seconds: float | None = None) -> None:
        """Stop accepting, let calls finish up to the drain time, then end the rest cleanly."""
        drain = self.settings.server.drain_seconds if drain_seconds is None else drain_seconds
        self.draining = True
        self.esl_server.stop_accepting()
        log.info("draining %d call(s) for up to %.0f s", len(self.calls), drain)
        if not self.idle.wait(timeout=drain):
            for call in list(self.calls.values()):
                gevent.spawn(call.fallback, "controller shutting down")
            self.idle.wait(timeout=20)
        self.esl_server.stop()
        self.fork_server.stop()
        if self.ops_server is not None:
            self.ops_server.stop()

    # ------------------------------------------------------------------ calls

    def _admit(self) -> bool:
        return not self.draining and len(self.calls) < self.settings.server.max_calls

    def _run_call(self, session: EslSession) -> None:
        call = Call(session, self.settings, self.handler_factory, register=self._register,
                    unregister=self._unregister, fork_url=self.fork_url, apology_file=self.apology_file,
                    dial_guard=self.dial_guard)
        self.calls_total += 1
        self.calls[call.uuid] = call
        self.idle.clear()
        try:
            call.run()
        finally:
            self._forget(call)

    def _register(self, call: Call) -> None:
        self.calls[call.uuid] = call

    def _unregister(self, call: Call) -> None:
        """Called by the call's cleanup: no more fork frames are routed to it."""
        self._forget(call)

    def _forget(self, call: Call) -> None:
        if self.calls.get(call.uuid) is call:
            del self.calls[call.uuid]
            for key in self._totals:
                self._totals[key] += getattr(call.stats, key)
            if call.fallback_reason:
                self.fallbacks += 1
            self.turn_metrics.observe(getattr(call.handler, "timings", None))
            if self.on_call_end is not None:
                try:
                    self.on_call_end(call)
                except Exception:
                    log.exception("[%s] call-end hook failed", call.uuid)
        if not self.calls:
            self.idle.set()

    def _fork_sink(self, call_uuid: str) -> ForkSink | None:
        return self.calls.get(call_uuid)

    # ------------------------------------------------------------------ ops

    def snapshot(self) -> dict[str, float]:
        live = dict.fromkeys(self._totals, 0)
        for call in self.calls.values():
            for key in live:
                live[key] += getattr(call.stats, key)
        snap: dict[str, float] = {key: self._totals[key] + live[key] for key in live}
        snap.update(calls_active=len(self.calls), calls_total=self.calls_total,
                    calls_rejected=self.esl_server.turned_away, fallbacks=self.fallbacks,
                    draining=1.0 if self.draining else 0.0)
        return snap

    def health(self) -> dict:
        return {"status": "draining" if self.draining else "ok", "calls_active": len(self.calls),
                "max_calls": self.settings.server.max_calls, "time": time.time()}
