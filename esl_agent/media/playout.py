"""What the caller has heard: accounting for streamed audio and file playbacks.

Streamed audio is sent ahead in bursts and FreeSWITCH plays it in real time from arrival
(fixtures README fact 19), so a virtual playout clock tells when it ends and how much was heard.
File playbacks are tracked from PLAYBACK_START/STOP; an interrupted playback still says FILE PLAYED,
only `playback_last_offset_pos` (samples) tells what was heard (fact 6).
"""

from __future__ import annotations

import time
from collections.abc import Callable


class PlayoutClock:
    """Virtual playout clock of one call's outgoing audio."""

    def __init__(self, sample_rate: int = 8000, clock: Callable[[], float] = time.monotonic) -> None:
        self.sample_rate = sample_rate
        self._clock = clock
        self._until = 0.0  # when the streamed audio sent so far finishes playing
        self._sent_ms = 0.0
        self._file_started: float | None = None
        self._files_heard_ms = 0.0

    def sent(self, nbytes: int) -> None:
        """Account `nbytes` of L16 audio just sent to FreeSWITCH."""
        now = self._clock()
        duration = nbytes / 2 / self.sample_rate
        self._until = max(now, self._until) + duration
        self._sent_ms += duration * 1000.0

    def file_started(self) -> None:
        self._file_started = self._clock()

    def file_stopped(self, heard_samples: int | None = None, rate: int | None = None) -> None:
        """A file playback ended; use FreeSWITCH's offset when given, else the elapsed time."""
        if self._file_started is None:
            return
        if heard_samples is not None:
            self._files_heard_ms += heard_samples * 1000.0 / (rate or self.sample_rate)
        else:
            self._files_heard_ms += (self._clock() - self._file_started) * 1000.0
        self._file_started = None

    def playing(self) -> bool:
        return self._file_started is not None or self._clock() < self._until

    def remaining_ms(self) -> float:
        return max(0.0, self._until - self._clock()) * 1000.0

    def heard_ms(self) -> float:
        """Milliseconds of agent audio the caller has heard since the last reset."""
        streamed = self._sent_ms - self.remaining_ms()
        current_file = 0.0
        if self._file_started is not None:
            current_file = (self._clock() - self._file_started) * 1000.0
        return max(0.0, streamed) + self._files_heard_ms + current_file

    def reset(self) -> None:
        """Barge-in: nothing more will play; start counting afresh."""
        self._until = self._clock()
        self._sent_ms = 0.0
        self._file_started = None
        self._files_heard_ms = 0.0
