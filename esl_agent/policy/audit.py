"""Tamper-evident audit log and the token check for outbound initiation.

Every outbound attempt, allowed or denied, is one JSON line in the audit log. Each record carries
the SHA-256 of the previous record (`prev`) and its own (`hash`), so editing, inserting or
deleting a record breaks the chain at that line (`AuditLog.verify`). A record is written, flushed
and fsynced before the call may proceed; if that fails, `AuditError` is raised and the call is
refused. (Cutting records off the end leaves a valid shorter chain: ship the log off the host,
e.g. with the daily digest, to catch that.)

Local processes that ask the controller to dial present a token: `client.expiry.nonce.mac`,
where mac = HMAC-SHA256(client secret, "client.expiry.nonce.number"). Secrets come from the
environment variable named by `policy.tokens_env` as `client:secret,client2:secret2`.
`guard_outbound` runs token check, dial policy, limits and audit in that order.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from esl_agent.errors import ConfigError
from esl_agent.policy.dialing import Decision, DialPolicy

GENESIS = "0" * 64
_TAIL_BYTES = 65536
_RESERVED = {"seq", "ts", "actor", "action", "number", "allowed", "rule", "prev", "hash"}
REFUSED_SPOKEN = "I'm sorry, I can't place that call right now."


class AuditError(OSError):
    """The audit record could not be written; the call must be refused."""


class TokenError(ValueError):
    """A token was refused; `reason` is a short word for the audit log."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"token refused: {reason}")
        self.reason = reason


def _digest(record: Mapping[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


class AuditLog:
    """Append-only, hash-chained JSON-lines log of outbound attempts."""

    def __init__(self, path: str | os.PathLike[str], clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()  # gevent-patched in the controller

    def append(self, actor: str, action: str, number: str, decision: Decision, **fields: Any) -> dict:
        """Write one record (durably) and return it; raise AuditError if that fails."""
        clash = _RESERVED & set(fields)
        if clash:
            raise ValueError(f"reserved audit field(s): {', '.join(sorted(clash))}")
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            except OSError as exc:
                raise AuditError(exc.errno, f"audit log {self.path}: {exc.strerror}") from None
            try:
                with os.fdopen(fd, "r+b") as fh:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX)  # other processes append too
                    prev, seq = _last_record(fh)
                    record: dict[str, Any] = {
                        "seq": seq + 1,
                        "ts": round(self._clock(), 3),
                        "actor": actor,
                        "action": action,
                        "number": number,
                        "allowed": decision.allowed,
                        "rule": decision.rule,
                        **fields,
                        "prev": prev,
                    }
                    record["hash"] = _digest(record)
                    line = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
                    fh.seek(0, os.SEEK_END)
                    fh.write(line.encode("ascii") + b"\n")
                    fh.flush()
                    os.fsync(fh.fileno())
            except (OSError, ValueError, TypeError) as exc:
                if isinstance(exc, OSError):
                    raise AuditError(exc.errno, f"audit log {self.path}: {exc.strerror}") from None
                raise AuditError(0, f"audit log {self.path}: {exc}") from None
        return record

    @staticmethod
    def verify(path: str | os.PathLike[str]) -> tuple[bool, int | None]:
        """Check the whole chain: (True, None) or (False, first bad line number, 1-based)."""
        prev = GENESIS
        expected_seq = 1
        try:
            fh = open(path, "rb")  # noqa: SIM115
        except FileNotFoundError:
            return True, None
        with fh:
            for lineno, raw in enumerate(fh, start=1):
                try:
                    record = json.loads(raw.decode("ascii"))
                except (UnicodeDecodeError, json.JSONDecodeError):
                    return False, lineno
                if not isinstance(record, dict):
                    return False, lineno
                if record.get("prev") != prev or record.get("seq") != expected_seq:
                    return False, lineno
                if record.get("hash") != _digest(record):
                    return False, lineno
                prev = record["hash"]
                expected_seq += 1
        return True, None

    @staticmethod
    def records(path: str | os.PathLike[str]) -> list[dict]:
        """All records (no verification; call verify first when it matters)."""
        out = []
        try:
            with open(path, encoding="ascii") as fh:
                for raw in fh:
                    raw = raw.strip()
                    if raw:
                        out.append(json.loads(raw))
        except FileNotFoundError:
            return []
        return out


def _last_record(fh: Any) -> tuple[str, int]:
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    if size == 0:
        return GENESIS, 0
    start = max(0, size - _TAIL_BYTES)
    fh.seek(start)
    tail = fh.read()
    lines = [ln for ln in tail.split(b"\n") if ln.strip()]
    if not lines or (start > 0 and len(lines) < 2):
        raise ValueError("cannot find the last record")
    record = json.loads(lines[-1].decode("ascii"))
    return str(record["hash"]), int(record["seq"])


# --------------------------------------------------------------------------------------------
# Tokens


class TokenChecker:
    """Verifies per-client HMAC tokens: expiry, constant-time MAC compare, no replay."""

    def __init__(self, secrets_by_client: Mapping[str, str], max_ttl: float = 300.0) -> None:
        for client, secret in secrets_by_client.items():
            if not client or any(ch in client for ch in ".:,") or len(secret) < 16:
                raise ConfigError(f"token client {client!r}: name without . : , and a secret of 16+ chars")
        self._secrets = {c: s.encode("utf-8") for c, s in secrets_by_client.items()}
        self.max_ttl = max_ttl
        self._seen: dict[str, float] = {}  # nonce -> expiry
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, env_name: str, env: Mapping[str, str] | None = None) -> TokenChecker:
        """Parse `client:secret,...` from the environment variable `env_name`."""
        value = (os.environ if env is None else env).get(env_name, "") if env_name else ""
        if not value:
            raise ConfigError(f"policy.tokens_env: environment variable {env_name or '(unset)'} is empty")
        pairs: dict[str, str] = {}
        for item in value.split(","):
            client, sep, secret = item.strip().partition(":")
            if not sep:
                raise ConfigError(f"{env_name}: expected client:secret pairs separated by commas")
            pairs[client] = secret
        return cls(pairs)

    @staticmethod
    def _mac(secret: bytes, client: str, expiry: int, nonce: str, number: str) -> str:
        msg = f"{client}.{expiry}.{nonce}.{number}".encode()
        return hmac.new(secret, msg, hashlib.sha256).hexdigest()

    def issue(self, client: str, number: str, ttl: float = 60.0, now: float | None = None) -> str:
        """Make a token for `client` to dial `number` (clients with the secret do the same)."""
        expiry = int((time.time() if now is None else now) + ttl)
        nonce = secrets.token_hex(16)
        return f"{client}.{expiry}.{nonce}.{self._mac(self._secrets[client], client, expiry, nonce, number)}"

    def verify(self, token: str | None, number: str, now: float | None = None) -> str:
        """Return the client name, or raise TokenError(reason)."""
        now = time.time() if now is None else now
        if not token or not isinstance(token, str):
            raise TokenError("missing")
        parts = token.split(".")
        if len(parts) != 4:
            raise TokenError("malformed")
        client, expiry_text, nonce, mac = parts
        if not expiry_text.isdigit() or not (16 <= len(nonce) <= 64) or not nonce.isalnum():
            raise TokenError("malformed")
        expiry = int(expiry_text)
        secret = self._secrets.get(client)
        # Compare against something even for unknown clients, so timing says nothing.
        expected = self._mac(secret or b"\0" * 32, client, expiry, nonce, number)
        good = hmac.compare_digest(expected.encode(), mac.encode())
        if secret is None or not good:
            raise TokenError("bad signature")
        if expiry < now:
            raise TokenError("expired")
        if expiry > now + self.max_ttl:
            raise TokenError("expiry too far ahead")
        with self._lock:
            for old, until in list(self._seen.items()):
                if until < now:
                    del self._seen[old]
            if nonce in self._seen:
                raise TokenError("replay")
            self._seen[nonce] = float(expiry)
        return client


def guard_outbound(
    actor: str,
    number: str,
    token: str | None,
    policy: DialPolicy,
    audit: AuditLog,
    *,
    checker: TokenChecker | None = None,
    limits: Any = None,
    now: float | None = None,
) -> Decision:
    """Token check, dial policy, limits, audit, in that order; the Decision says go or no.

    With `checker` the token is required (the controller's API for local processes); without
    it the request comes from inside the controller (the LLM's transfer_call), which has no token.
    Every attempt is audited; if the audit record cannot be written the answer is a refusal.
    """
    client = actor
    decision: Decision | None = None
    if checker is not None:
        try:
            client = f"{actor}/{checker.verify(token, number, now=now)}"
        except TokenError as exc:
            decision = Decision(False, number, f"token:{exc.reason}", REFUSED_SPOKEN)
    elif token is not None:
        decision = Decision(False, number, "token:no checker configured", REFUSED_SPOKEN)
    if decision is None:
        decision = policy.check(number, direction="out")
    if decision.allowed and limits is not None:
        refused = limits.admit(decision.number, now=now)
        if refused:
            decision = Decision(False, decision.number, f"limit:{refused}", REFUSED_SPOKEN)
    try:
        audit.append(client, "outbound", decision.number, decision)
    except AuditError:
        if decision.allowed and limits is not None:
            limits.cancel(decision.number)
        return Decision(False, decision.number, "audit:write failed", REFUSED_SPOKEN)
    return decision
