"""Turn ids and cancellation: every reply runs as a `Turn` with its own greenlet group.

`TurnClock.interrupt()` bumps the id first (one integer write, so every later
`turn.cancelled` check already fails), then kills the old turn's group without blocking.
Provider code closes its streams in `finally`, which is what stops generation and billing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import gevent
import gevent.pool


class Clock(Protocol):
    """Time for the pipeline: injectable so tests can drive it."""

    def now(self) -> float:
        """Monotonic seconds."""
        ...

    def sleep(self, seconds: float) -> None: ...

    def call_later(self, seconds: float, fn: Callable[..., Any], *args: Any) -> gevent.Greenlet:
        """Run fn(*args) after `seconds` in a new greenlet; kill the greenlet to cancel."""
        ...


class GeventClock:
    """The real clock: time.monotonic and gevent timers."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        gevent.sleep(seconds)

    def call_later(self, seconds: float, fn: Callable[..., Any], *args: Any) -> gevent.Greenlet:
        return gevent.spawn_later(seconds, fn, *args)


class Turn:
    """One reply of the agent. Implements providers.base.TurnToken."""

    def __init__(self, clock: TurnClock, turn_id: int) -> None:
        self.id = turn_id
        self.group = gevent.pool.Group()
        self._clock = clock

    @property
    def cancelled(self) -> bool:
        return self.id != self._clock.current

    def spawn(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> gevent.Greenlet:
        """Run fn in this turn's group; it dies with the turn."""
        return self.group.spawn(fn, *args, **kwargs)

    def __repr__(self) -> str:
        return f"Turn(id={self.id}, cancelled={self.cancelled})"


class TurnClock:
    """The call's turn counter plus the current turn's cancel group."""

    def __init__(self) -> None:
        self.current = 0
        self._turn: Turn | None = None
        self.last_reason = ""

    @property
    def turn(self) -> Turn | None:
        """The turn that is still current, if any."""
        turn = self._turn
        return turn if turn is not None and not turn.cancelled else None

    def begin(self) -> Turn:
        """Start the next turn; the previous one (if still running) is cancelled."""
        old = self._turn
        self.current += 1
        turn = Turn(self, self.current)
        self._turn = turn
        if old is not None:
            old.group.kill(block=False)
        return turn

    def renew(self, turn: Turn) -> int:
        """Give a still-current turn a fresh id, keeping its greenlets (resume after a pause).

        Audio sent under the old id may already be marked stale by the call (stop_audio), so a
        reply that continues after a false interruption sends under the new id.
        """
        if turn.cancelled:
            return self.current
        self.current += 1
        turn.id = self.current
        return turn.id

    def interrupt(self, reason: str) -> int:
        """Cancel the current turn: bump the id, then kill its group without blocking."""
        self.current += 1
        self.last_reason = reason
        old, self._turn = self._turn, None
        if old is not None:
            old.group.kill(block=False)
        return self.current
