"""The media clock of a simulated channel: one tick per frame.

Each tick takes what the caller hears (streamed fork audio first, else the current playback, else
silence) to the recorder and the caller script, and what the caller says to every audio fork.
Streamed audio is only written while the channel writes frames (`send_silence_when_idle`, fact 18).
"""

from __future__ import annotations

import time
import uuid as uuidlib

import gevent


class MediaClock:
    """The frame clock of a `SimulatedCall` (mixed into it)."""

    def _media_clock(self) -> None:
        """One tick per frame: the caller's ear (recorder) and mouth (forks)."""
        frame_s = self.sim.frame_ms / 1000
        n = self.frame_samples
        silence = b"\x00\x00" * n
        start = time.monotonic()
        offset = start - self.recording.t0
        k = 0
        while not self._finished and not self._hung_up.is_set():
            k += 1
            target = start + k * frame_s
            delay = target - time.monotonic()
            if delay > 0:
                gevent.sleep(delay)
            # the media timer's time: frames stay contiguous even when a tick runs late
            t = round(offset + k * frame_s, 6)
            played, source = self._write_side(n, t)
            out = played if played is not None else silence
            self.recording.write_frame(t, out, source)
            self.caller.hear(t, out, played is not None)
            caller_pcm = self.caller.read(t, n)
            for fork in list(self.forks.values()):
                fork.push_audio(caller_pcm, out)

    def _write_side(self, n: int, t: float) -> tuple[bytes | None, str | None]:
        pb_frame: bytes | None = None
        pb = self.playback
        if pb is not None and not pb.done.is_set():
            if pb.break_requested:
                pb.broken = not pb.hangup
                self.recording.end_segment(pb.key, t, interrupted=True,
                                           heard_samples=pb.pos)
                pb.done.set()
            else:
                chunk = pb.pcm[pb.pos:pb.pos + n]
                if chunk.size:
                    if not pb.started:
                        pb.started = True
                        self.recording.begin_segment(pb.key, pb.path, "playback", t)
                    pb.pos += chunk.size
                    pb_frame = chunk.tobytes()
                    if chunk.size < n:
                        pb_frame += b"\x00\x00" * (n - chunk.size)
                if pb.pos >= pb.pcm.size:
                    self.recording.end_segment(pb.key, t + self.sim.frame_ms / 1000,
                                               interrupted=False, heard_samples=pb.pos)
                    pb.done.set()
        stream_frame: bytes | None = None
        writing = self.sim.send_silence_when_idle or pb_frame is not None
        streams = any(f.playout is not None for f in self.forks.values())
        if not writing and streams and not self._warned_idle:
            self._warned_idle = True
            self.record("note", what="streamed audio not written: the parked channel "
                        "writes no frames without send_silence_when_idle (fact 18)")
        for fork in self.forks.values() if writing else ():
            if fork.playout is not None and not fork.closed:
                f = fork.playout.next_frame(n)
                if f is not None:
                    stream_frame = f
                    break
        if stream_frame is not None:
            if self._stream_key is None:
                self._stream_key = f"st-{uuidlib.uuid4().hex[:8]}"
                self.recording.begin_segment(self._stream_key, "stream", "stream", t)
            return stream_frame, "stream"
        if self._stream_key is not None:
            self.end_stream_segment(interrupted=False)
        if pb_frame is not None:
            return pb_frame, pb.path if pb else None
        return None, None

    def end_stream_segment(self, interrupted: bool) -> None:
        if self._stream_key is not None:
            self.recording.end_segment(self._stream_key, self.recording.now(),
                                       interrupted=interrupted)
            self._stream_key = None
