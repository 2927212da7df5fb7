"""The two child processes (controller under test, load process) and their JSON-line channel."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Child:
    """A `python -m <module>` child speaking one JSON line per request and per answer."""

    def __init__(self, module: str, args: list[str], log_path: Path, cwd: Path) -> None:
        self.module = module
        self._log: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 - lives as long as the child
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, "-m", module, *args], cwd=cwd, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log)
        self.pid = self.proc.pid
        self.ready = self.read(timeout=120)

    def read(self, timeout: float = 600) -> dict[str, Any]:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{self.module} exited (code {self.proc.poll()}); see its log")
            try:
                return json.loads(line)
            except ValueError:  # something printed that is not ours: skip it
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.module}: no answer") from None

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"op": op, **args}) + "\n").encode())
        self.proc.stdin.flush()
        return self.read()

    def kill(self) -> float:
        """SIGKILL (a crash); returns the monotonic time of the kill."""
        at = time.monotonic()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._log.close()
        return at

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call("quit")
            except (RuntimeError, BrokenPipeError, OSError):
                pass
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


def proc_stats(pid: int) -> tuple[float, float]:
    """(cpu seconds, rss MB) of a process."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    rss = 0.0
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024.0
    return cpu, rss
