"""HTTP endpoint for operators: GET /healthz (JSON) and GET /metrics (Prometheus text)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable

from gevent.pywsgi import WSGIServer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

log = logging.getLogger("esl_agent.ops.health")


class OpsServer:
    """Serves /healthz from `health()` and /metrics from a prometheus registry."""

    def __init__(self, listen: tuple[str, int], health: Callable[[], dict], registry: CollectorRegistry) -> None:
        self._health = health
        self._registry = registry
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
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]
