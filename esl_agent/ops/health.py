"""HTTP endpoint for operators: GET /healthz (JSON), GET /metrics (Prometheus text) and, when
configured, POST /outbound (token-checked, policy-checked, audited outbound initiation)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable

from gevent.pywsgi import WSGIServer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

log = logging.getLogger("esl_agent.ops.health")

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 429: "Too Many Requests",
            502: "Bad Gateway", 503: "Service Unavailable"}


class OpsServer:
    """Serves /healthz from `health()` and /metrics from a prometheus registry."""

    def __init__(
        self,
        listen: tuple[str, int],
        health: Callable[[], dict],
        registry: CollectorRegistry,
        outbound: Callable[[bytes, str | None, str], tuple[int, dict]] | None = None,
    ) -> None:
        self._health = health
        self._registry = registry
        self._outbound = outbound
        self._server = WSGIServer(listen, self._app, log=None, error_log=log)

    @property
    def port(self) -> int:
        return self._server.server_port

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop(timeout=1)

    def _app(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            report = self._health()
            status = "200 OK" if report.get("status") == "ok" else "503 Service Unavailable"
            body = json.dumps(report).encode()
            start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        if path == "/metrics":
            body = generate_latest(self._registry)
            start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(body)))])
            return [body]
        if path == "/outbound" and environ.get("REQUEST_METHOD") == "POST" and self._outbound is not None:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(min(length, 8192))
            status, reply = self._outbound(body, environ.get("HTTP_AUTHORIZATION"), environ.get("REMOTE_ADDR", "-"))
            data = json.dumps(reply).encode()
            start_response(f"{status} {_REASONS.get(status, 'Error')}",
                           [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
            return [data]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]
