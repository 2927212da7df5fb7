"""The controller's outbound-initiation request, framework-free: token, policy, limits, audit.

`handle_outbound(body, authorization, ...)` takes the raw request body (JSON `{"number": "..."}`)
and the `Authorization: Bearer <token>` header value, runs `guard_outbound` and, only when it
allows, calls `start(decision)` (the controller originates `Decision.originate_target()`).
It returns `(HTTP status, JSON-able dict)`; the HTTP server around it only moves bytes.

Status codes: 200 started; 400 unreadable request or number; 401 token refused; 403 policy
denied; 429 a limit was hit; 502 FreeSWITCH refused the originate; 503 audit log unwritable.
The response never echoes the token; the number comes back normalised (or as sent when invalid).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from esl_agent.errors import EslAgentError
from esl_agent.policy.audit import AuditLog, TokenChecker, guard_outbound
from esl_agent.policy.dialing import Decision, DialPolicy

MAX_BODY = 4096

_STATUS_BY_RULE = (
    ("token:", 401),
    ("limit:", 429),
    ("audit:", 503),
    ("invalid:", 400),
)


def _status(decision: Decision) -> int:
    for prefix, status in _STATUS_BY_RULE:
        if decision.rule.startswith(prefix):
            return status
    return 403


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def handle_outbound(
    body: bytes,
    authorization: str | None,
    *,
    policy: DialPolicy,
    audit: AuditLog,
    checker: TokenChecker,
    limits: Any = None,
    start: Callable[[Decision], str] | None = None,
    peer: str = "local",
    now: float | None = None,
) -> tuple[int, dict[str, Any]]:
    """Decide and (when allowed) start one outbound call; return (status, response body)."""
    if len(body) > MAX_BODY:
        return 400, {"error": f"request body larger than {MAX_BODY} bytes"}
    try:
        request = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return 400, {"error": "request body must be JSON"}
    if not isinstance(request, dict) or not isinstance(request.get("number"), str):
        return 400, {"error": 'expected {"number": "<phone number>"}'}
    decision = guard_outbound(
        f"api:{peer}",
        request["number"],
        bearer_token(authorization),
        policy,
        audit,
        checker=checker,
        limits=limits,
        now=now,
    )
    reply: dict[str, Any] = {"allowed": decision.allowed, "number": decision.number, "rule": decision.rule}
    if not decision.allowed:
        return _status(decision), reply
    if start is not None:
        try:
            reply["job"] = start(decision)
        except EslAgentError as exc:
            if limits is not None:
                limits.cancel(decision.number)
            return 502, {**reply, "error": f"originate failed: {type(exc).__name__}"}
    return 200, reply
