"""A manual clock for pipeline tests: time moves only when the test says so."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gevent
import gevent.event


class ManualTimer:
    def __init__(self, due: float, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.due = due
        self.fn = fn
        self.args = args
        self.dead = False

    def kill(self, *_: Any, **__: Any) -> None:
        self.dead = True


class ManualClock:
    """Implements pipeline.turns.Clock; `advance()` fires due timers in order, in the caller."""

    def __init__(self) -> None:
        self.t = 0.0
        self.timers: list[ManualTimer] = []

    def now(self) -> float:
        return self.t

    def call_later(self, seconds: float, fn: Callable[..., Any], *args: Any) -> ManualTimer:
        timer = ManualTimer(self.t + seconds, fn, args)
        self.timers.append(timer)
        return timer

    def sleep(self, seconds: float) -> None:
        woken = gevent.event.Event()
        self.call_later(seconds, woken.set)
        woken.wait()

    def pending(self) -> list[ManualTimer]:
        return [t for t in self.timers if not t.dead]

    def advance(self, seconds: float) -> None:
        end = self.t + seconds
        while True:
            due = sorted((t for t in self.pending() if t.due <= end), key=lambda t: t.due)
            if not due:
                break
            timer = due[0]
            timer.dead = True
            self.t = max(self.t, timer.due)
            timer.fn(*timer.args)
            gevent.sleep(0)
        self.t = end
