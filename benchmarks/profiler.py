"""Profile of the controller process with py-spy (sampling from outside: it sees every greenlet).

cProfile follows one greenlet only (greenlet switches swap the profiling state) and an in-process
sampling thread only gets the GIL when the hub releases it, so both miss the work under gevent.
py-spy reads the interpreter's stacks from outside. It is optional (`pip install py-spy`); without
it the report says so.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

PER_FRAME_PATH = ("media/fork_server.py", "control/call.py", "pipeline/conversation.py",
                  "pipeline/speech_out.py", "providers/google_stt.py", "media/playout.py", "wsproto/")


def _py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def start(pid: int, out: Path, duration_s: float, rate: int = 250) -> subprocess.Popen | None:
    exe = _py_spy()
    if exe is None:
        return None
    return subprocess.Popen([exe, "record", "--pid", str(pid), "--duration", str(int(duration_s)),
                             "--rate", str(rate), "--format", "raw", "--nonblocking", "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def finish(proc: subprocess.Popen | None, out: Path) -> dict[str, Any]:
    if proc is None:
        return {"error": "py-spy is not installed (pip install py-spy); no profile"}
    proc.send_signal(signal.SIGINT)  # py-spy writes what it has on Ctrl-C
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
    if not out.exists():
        return {"error": "py-spy wrote nothing (ptrace not permitted?)"}
    return summarise(out.read_text().splitlines())


def _func(frame: str) -> str:
    """'name (path/file.py:123)' -> 'path/file.py(name)' with the path shortened."""
    name, _, where = frame.rpartition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "lib/python3.11/", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{path}({name})"


_WAITS = ("gevent/_threading.py(acquire_with_timeout)", "gevent/_threading.py(_Condition.wait)")


def _waiting(frames: list[str]) -> bool:
    """A native gevent threadpool worker waiting for work (not the hub thread)."""
    if not frames:
        return True
    return frames[-1] in _WAITS and any("threadpool.py(_WorkerGreenlet.run)" in f for f in frames)


def summarise(lines: list[str]) -> dict[str, Any]:
    """Own and cumulative sample counts per function; idle threadpool workers excluded (py-spy
    already leaves out threads blocked in a system call, e.g. the hub waiting in epoll)."""
    own: Counter[str] = Counter()
    cumulative: Counter[str] = Counter()
    total = idle = 0
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_func(f) for f in stack.split(";") if f]
        total += n
        if _waiting(frames):
            idle += n
            continue
        if frames:
            own[frames[-1]] += n
        for f in set(frames):
            cumulative[f] += n
    busy = max(total - idle, 1)

    def rows(counter: Counter[str], keep: Any = None, limit: int = 25) -> list[tuple[str, int, float]]:
        items = [(k, v) for k, v in counter.most_common() if keep is None or keep(k)]
        return [(k, v, round(100.0 * v / busy, 2)) for k, v in items[:limit]]

    return {"samples": total, "idle_samples": idle, "busy_samples": busy,
            "top_own": rows(own), "per_frame_path": rows(cumulative, lambda k: any(p in k for p in PER_FRAME_PATH), 30),
            "top_cumulative": rows(cumulative, None, 40)}
