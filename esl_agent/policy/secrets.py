"""Trunk password rotation: write the new secret (0600), make FreeSWITCH re-register the gateway.

`rotate_trunk_password(policy, new_secret, run=...)`:
1. writes the secret to `trunk.password_file` atomically (a 0600 temp file in the same directory,
   fsync, rename; owner and group of the old file kept), so FreeSWITCH never reads half a file;
2. `reloadxml` (the gateway file's exec-set reads the file again), `sofia profile external
   killgw <name>`, `sofia profile external rescan` (the gateway comes back with the new
   password and registers);
3. polls `sofia status gateway <name>` until it says REGED or the deadline passes.
The secret is never printed, logged or put on a command line; errors name the file, not the value.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from esl_agent.errors import ConfigError
from esl_agent.policy.dialing import DialPolicy

log = logging.getLogger("esl_agent.policy.secrets")
Runner = Callable[[Sequence[str]], tuple[int, str]]


class RotationError(Exception):
    """The rotation did not complete; the message never contains the secret."""


def write_secret(path: str | os.PathLike[str], secret: str) -> None:
    """Atomically replace `path` with `secret` (mode 0600, previous owner kept)."""
    if not secret or "\n" in secret or "\r" in secret or "\0" in secret:
        raise RotationError("the new secret must be one non-empty line")
    target = Path(path)
    if not target.parent.is_dir():
        raise RotationError(f"{target.parent}: directory does not exist")
    try:
        old = target.stat()
    except FileNotFoundError:
        old = None
    fd, tmp = tempfile.mkstemp(prefix=".rotate-", dir=target.parent)
    try:
        os.fchmod(fd, 0o600)
        if old is not None and os.geteuid() == 0:
            os.fchown(fd, old.st_uid, old.st_gid)
        os.write(fd, secret.encode("utf-8"))
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, target)
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise RotationError(f"{target}: cannot write the new secret: {exc.strerror}") from None
    finally:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def rotate_trunk_password(
    policy: DialPolicy,
    new_secret: str,
    run: Runner,
    fs_cli: str = "fs_cli",
    deadline_s: float = 30.0,
    poll_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """Rotate and wait for registration; return the final gateway state (REGED)."""
    trunk = policy.raw.get("trunk") or {}
    name = str(trunk.get("name") or "provider")
    path = str(trunk.get("password_file") or "")
    if not path.startswith("/"):
        raise ConfigError(f"{policy.source}: trunk.password_file: must be an absolute path")
    write_secret(path, new_secret)
    log.info("trunk secret rewritten in %s (mode 0600); re-registering gateway %s", path, name)
    for command in ("reloadxml", f"sofia profile external killgw {name}", "sofia profile external rescan"):
        rc, out = run([fs_cli, "-x", command])
        if rc != 0 or out.strip().startswith("-ERR"):
            raise RotationError(f"fs_cli {command!r} failed: {out.strip()[:200] or f'rc {rc}'}")
    end = clock() + deadline_s
    state = "unknown"
    while True:
        rc, out = run([fs_cli, "-x", f"sofia status gateway {name}"])
        m = re.search(r"^\s*State\s+(\S+)", out, re.M)
        state = m.group(1) if m else "unknown"
        if rc == 0 and state == "REGED":
            log.info("gateway %s registered with the new secret", name)
            return state
        if clock() >= end:
            raise RotationError(f"gateway {name} did not register within {deadline_s:.0f} s (state {state})")
        sleep(poll_s)
