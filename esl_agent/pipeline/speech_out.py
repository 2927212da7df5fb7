"""Speech out: a reply's sentences become audio sent to the call, in order, under the turn id.

`Speaker` synthesises each queued sentence as soon as it exists (up to three at once, so
synthesis of sentence n+1 overlaps the playback of sentence n), sends the audio of the reply's
utterances in order, tracks what the caller has heard (`position`), pauses and resumes the reply
on a possible interruption and plays the prepared filler when the first sentence is late.
`PreparedAudio` keeps short fixed phrases (filler, apology) synthesised once per voice.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import gevent
import gevent.event
import gevent.lock
import gevent.queue

from esl_agent import logs
from esl_agent.agent.history import ReplyRecord, SpokenSentence, locate
from esl_agent.agent.speech_text import for_speech
from esl_agent.config import PipelineSettings
from esl_agent.errors import ProviderError, ProviderTimeout
from esl_agent.logs import CallLogger
from esl_agent.pipeline.bargein import PlaybackView
from esl_agent.pipeline.ports import CallControl
from esl_agent.pipeline.records import CallUsage, TurnTiming
from esl_agent.pipeline.turns import Clock, Turn, TurnClock
from esl_agent.providers.base import NoTurn, TextToSpeech

END = object()
"""Ends a reply's utterance queue and an utterance's chunk queue."""

HEARD_TOLERANCE_MS = 250.0  # heard accounting of file playbacks is only this exact


def close_quietly(iterator: Iterator[Any] | Any) -> None:
    """Close a provider stream (generator or iterator) if it can be closed; never raise."""
    close = getattr(iterator, "close", None)
    if close is not None:
        with contextlib.suppress(Exception):
            close()


# ------------------------------------------------------------------------------ prepared audio


class PreparedAudio:
    """Short fixed phrases (filler, apology) synthesised once per voice and kept in memory.

    Shared by the calls of a process: the key is provider, voice, sample rate and text.
    """

    def __init__(self) -> None:
        self._items: dict[tuple[str, str, int, str], gevent.event.AsyncResult] = {}

    def get(self, tts: TextToSpeech, text: str, sample_rate: int, language: str) -> gevent.event.AsyncResult:
        """The audio of `text` (bytes, or None if synthesis failed); starts synthesis if needed."""
        key = (tts.name, tts.voice, sample_rate, text)
        result = self._items.get(key)
        if result is None or (result.ready() and result.value is None):
            result = gevent.event.AsyncResult()
            self._items[key] = result
            gevent.spawn(self._render, result, tts, text, sample_rate, language)
        return result

    @staticmethod
    def _render(result: gevent.event.AsyncResult, tts: TextToSpeech, text: str, rate: int, language: str) -> None:
        try:
            convert = Resampler(tts.sample_rate, rate)
            pcm = b"".join(convert(c) for c in tts.synthesize(for_speech(text, language), NoTurn()))
            result.set(pcm + convert(b"", last=True) or None)
        except Exception as exc:  # a prepared phrase is optional
            logs.call_logger("-", __name__).warning("prepared phrase failed: %s", type(exc).__name__)
            result.set(None)


SHARED_PREPARED = PreparedAudio()


class Resampler:
    """Streaming resampler from the TTS rate to the call rate (identity when they match)."""

    def __init__(self, from_rate: int, to_rate: int) -> None:
        self._stream = None
        self._from, self._to = from_rate, to_rate
        if from_rate != to_rate:
            try:
                import soxr

                self._stream = soxr.ResampleStream(from_rate, to_rate, 1, dtype="int16")
            except ImportError:
                self._stream = None

    def __call__(self, pcm: bytes, last: bool = False) -> bytes:
        if self._from == self._to:
            return pcm
        if self._stream is None:
            from esl_agent.media.wavfile import resample

            return resample(pcm, self._from, self._to)
        import numpy as np

        samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2")
        return np.asarray(self._stream.resample_chunk(samples, last=last), dtype="<i2").tobytes()


# ------------------------------------------------------------------------------ a reply in flight


class Utterance:
    """One sentence (or filler, or apology) on its way to the caller, audio streamed in."""

    def __init__(self, spoken: SpokenSentence, kind: str = "sentence") -> None:
        self.spoken = spoken
        self.kind = kind  # sentence | filler | apology
        self.chunks: gevent.queue.Queue = gevent.queue.Queue()
        self.audio = bytearray()  # what was sent of it (kept to resume after a pause)
        self.complete = False

    @property
    def text(self) -> str:
        return self.spoken.text


@dataclass(eq=False)
class Reply:
    """One turn's reply in flight: its utterance queue, playback position, pause and tool actions."""

    turn: Turn
    record: ReplyRecord | None
    timing: TurnTiming
    file_text: str = ""  # a greeting played from a file: no record, just what it says
    queue: gevent.queue.Queue = field(default_factory=gevent.queue.Queue)
    utterances: list[Utterance] = field(default_factory=list)  # those whose audio started
    queued_any: bool = False
    origin_ms: float | None = None  # reply position = call.heard_ms() - origin_ms
    paused_at: float | None = None
    pause_words: int = 0
    pause_timer: Any = None
    resume_gate: gevent.event.Event = field(default_factory=gevent.event.Event)
    finished: gevent.event.Event = field(default_factory=gevent.event.Event)
    after_speech: list[Callable[[], Any]] = field(default_factory=list)
    ends_call: bool = False
    done_sending: bool = False
    worker: gevent.Greenlet | None = None
    tts_jobs: list[gevent.Greenlet] = field(default_factory=list)
    tts_slots: gevent.lock.Semaphore = field(default_factory=lambda: gevent.lock.Semaphore(3))

    def __post_init__(self) -> None:
        self.resume_gate.set()


# ------------------------------------------------------------------------------ the speaker


class Speaker:
    """The speech-out side of one call.

    Args:
        call: the call port (audio out, playback position, stop).
        tts: the text-to-speech provider.
        clock: time source shared with the conversation.
        turns: the call's turn ids (a resumed reply goes out under a fresh one).
        settings: filler text and delay.
        usage: the call's usage record (TTS characters are counted here).
        log: the call's logger.
        publish: `(state, turn_id)` -> publish the call state (speaking, listening).
        on_heard: called once a reply was sent and heard in full.
        current: the conversation's reply in flight (or None).
        closed: whether the conversation was closed.
    """

    def __init__(
        self,
        call: CallControl,
        tts: TextToSpeech,
        clock: Clock,
        turns: TurnClock,
        settings: PipelineSettings,
        usage: CallUsage,
        log: CallLogger,
        *,
        publish: Callable[[str, int], None],
        on_heard: Callable[[Reply], None],
        current: Callable[[], Reply | None],
        closed: Callable[[], bool],
        sample_rate: int,
        language: str,
        prepared: PreparedAudio,
        tts_timeout: float,
        apology_text: str,
        apology_file: str | None,
    ) -> None:
        self.call = call
        self.tts = tts
        self.clock = clock
        self.turns = turns
        self.settings = settings
        self.usage = usage
        self.log = log
        self.sample_rate = sample_rate
        self.language = language
        self.prepared = prepared
        self.tts_timeout = tts_timeout
        self.apology_text = apology_text
        self.apology_file = apology_file
        self._publish = publish
        self._on_heard = on_heard
        self._current = current
        self._closed = closed
        self._bytes_per_ms = sample_rate * 2 / 1000.0

    # ============================================================== queueing and synthesis

    def enqueue(self, reply: Reply, text: str, kind: str = "sentence", pcm: bytes | None = None) -> None:
        """Queue a sentence for the speaker; its synthesis starts now (in parallel with playback)."""
        if reply.turn.cancelled:
            return
        if reply.timing.first_sentence is None and kind == "sentence":
            reply.timing.first_sentence = self.clock.now()
        assert reply.record is not None
        utterance = Utterance(reply.record.say(text, in_history=kind != "filler"), kind)
        reply.queued_any = True
        if pcm is None and kind == "apology":
            pcm = self._prepared_ready(self.apology_text)
        if pcm is not None:
            utterance.chunks.put(pcm)
            utterance.chunks.put(END)
        else:
            reply.tts_jobs.append(reply.turn.spawn(self._synthesize, reply, utterance))
        reply.queue.put(utterance)

    def _synthesize(self, reply: Reply, utterance: Utterance) -> None:
        turn = reply.turn
        with reply.tts_slots:
            if turn.cancelled:
                return
            convert = Resampler(self.tts.sample_rate, self.sample_rate)
            reply.timing.tts_chars += len(utterance.text)
            self.usage.tts_chars += len(utterance.text)
            chunks = self.tts.synthesize(for_speech(utterance.text, self.language), turn)
            try:
                for chunk in chunks:
                    if turn.cancelled:
                        return
                    if reply.timing.tts_first_byte is None:
                        reply.timing.tts_first_byte = self.clock.now()
                    pcm = convert(chunk)
                    if pcm:
                        utterance.chunks.put(pcm)
                tail = convert(b"", last=True)
                if tail:
                    utterance.chunks.put(tail)
                utterance.chunks.put(END)
            except ProviderError as exc:
                utterance.chunks.put(exc)
            except Exception as exc:  # a broken provider must not kill the call
                self.log.exception("text to speech raised")
                utterance.chunks.put(ProviderError(f"{type(exc).__name__}"))
            finally:
                close_quietly(chunks)

    # ============================================================== sending

    def speak(self, reply: Reply) -> None:
        """Send the reply's utterances in order, each as its audio arrives; then finish the turn."""
        turn = reply.turn
        apologised = False
        while True:
            utterance = reply.queue.get()
            if utterance is END:
                break
            try:
                self._play(reply, utterance)
            except ProviderError as exc:
                if turn.cancelled:
                    return
                self.log.warning("text to speech failed: %s", type(exc).__name__, extra={"turn": turn.id})
                if apologised or utterance.kind == "apology":
                    self.play_apology_file()
                    break
                apologised = True
                self._abandon_generation(reply)
                self.enqueue(reply, self.apology_text, kind="apology")
                reply.queue.put(END)
            if turn.cancelled:
                return
        self._finish(reply)

    def _play(self, reply: Reply, utterance: Utterance) -> None:
        turn = reply.turn
        started = False
        while True:
            try:
                item = utterance.chunks.get(timeout=self.tts_timeout)
            except gevent.queue.Empty:
                raise ProviderTimeout(f"no speech audio within {self.tts_timeout:g} s") from None
            if item is END:
                break
            if isinstance(item, ProviderError):
                raise item
            reply.resume_gate.wait()
            if turn.cancelled:
                return
            if not started:
                started = True
                reply.utterances.append(utterance)
                if reply.origin_ms is None:
                    # Nothing of ours is playing when a reply starts (a busy one is interrupted).
                    reply.origin_ms = self.call.heard_ms()
                    reply.timing.first_audio = self.clock.now()
                    self._publish("speaking", turn.id)
                    self.prepare_phrases()
            self.call.send_audio(item, turn.id)
            utterance.audio += item
            utterance.spoken.duration_ms += len(item) / self._bytes_per_ms
        utterance.complete = True
        if started and not turn.cancelled:
            self.call.flush_audio(turn.id)

    def _abandon_generation(self, reply: Reply) -> None:
        """Stop the LLM and the other TTS jobs of a reply whose audio cannot continue."""
        current = gevent.getcurrent()
        for job in [reply.worker, *reply.tts_jobs]:
            if job is not None and job is not current:
                job.kill(block=False)
        reply.after_speech.clear()
        reply.ends_call = False
        while not reply.queue.empty():
            dropped = reply.queue.get_nowait()
            if isinstance(dropped, Utterance) and reply.record is not None:
                reply.record.unsay(dropped.spoken)

    def _finish(self, reply: Reply) -> None:
        """After the last utterance was sent: wait until it was heard, then complete the turn."""
        reply.done_sending = True
        deadline = self.clock.now() + self.reply_ms(reply) / 1000.0 + 3.0
        while not reply.finished.is_set():
            if reply.turn.cancelled or self._closed():
                return
            if self.heard_all(reply):
                break
            if self.clock.now() > deadline and reply.resume_gate.is_set():
                self.log.warning("playback end not seen in time; going on", extra={"turn": reply.turn.id})
                break
            remaining = self.reply_ms(reply) - self.position(reply)
            self.clock.sleep(min(0.1, max(0.02, remaining / 1000.0)))
        self._on_heard(reply)

    # ============================================================== what the caller heard

    def heard_all(self, reply: Reply) -> bool:
        """Everything of the reply was sent and played (within a small tolerance)."""
        return (
            reply.done_sending
            and reply.resume_gate.is_set()
            and not self.call.playing()
            and self.position(reply) >= self.reply_ms(reply) - HEARD_TOLERANCE_MS
        )

    def busy(self, reply: Reply) -> bool:
        """The reply is still being generated, spoken or paused (caller speech may interrupt it)."""
        return not reply.finished.is_set() or reply.paused_at is not None or self.call.playing()

    def position(self, reply: Reply) -> float:
        """Milliseconds of this reply the caller has heard."""
        if reply.paused_at is not None:
            return reply.paused_at
        if reply.origin_ms is None:
            return 0.0
        return min(max(0.0, self.call.heard_ms() - reply.origin_ms), self.reply_ms(reply))

    @staticmethod
    def reply_ms(reply: Reply) -> float:
        """Milliseconds of audio sent for the reply so far."""
        return reply.record.spoken_ms if reply.record is not None else 0.0

    def view(self, reply: Reply | None) -> PlaybackView:
        """What the caller hears of `reply` now, for the barge-in detector."""
        if reply is None or not self.busy(reply):
            return PlaybackView("listening")
        if reply.file_text:
            return PlaybackView("speaking", sentence=reply.file_text, elapsed_ms=self.call.heard_ms())
        if reply.origin_ms is None or reply.record is None:
            return PlaybackView("thinking")
        if reply.paused_at is None and not self.call.playing():
            return PlaybackView("thinking")
        sentences = reply.record.sentences
        where = locate(sentences, self.position(reply))
        if where is None:
            return PlaybackView("thinking")
        index, elapsed = where
        previous = sentences[index - 1].text if index > 0 else ""
        return PlaybackView(
            "speaking", sentence=sentences[index].text, previous=previous, elapsed_ms=elapsed,
            paused=reply.paused_at is not None,
        )

    # ============================================================== pause and resume

    def pause(self, reply: Reply, words: int, resume_after_s: float) -> None:
        """Maybe an interruption: stop playback, resume if no more words follow in time."""
        if reply.file_text:
            return  # a greeting file cannot be resumed: only a real interruption stops it
        if reply.paused_at is None:
            if reply.origin_ms is None:
                return
            reply.paused_at = self.position(reply)
            reply.resume_gate.clear()
            self.call.stop_audio()
            reply.pause_words = words
            self.log.info("paused for possible interruption", extra={"turn": reply.turn.id})
            self._publish("listening", reply.turn.id)
        elif words > reply.pause_words:
            reply.pause_words = words
        else:
            return
        if reply.pause_timer is not None:
            reply.pause_timer.kill(block=False)
        reply.pause_timer = self.clock.call_later(resume_after_s, self._false_interruption, reply)

    def _false_interruption(self, reply: Reply) -> None:
        if reply is not self._current() or reply.turn.cancelled or reply.paused_at is None or self._closed():
            return
        self.log.info("false interruption: resuming", extra={"turn": reply.turn.id})
        self._resume(reply)

    def _resume(self, reply: Reply) -> None:
        """Send the reply again from where the caller stopped hearing it, under a fresh turn id."""
        position = reply.paused_at or 0.0
        turn_id = self.turns.renew(reply.turn)
        reply.origin_ms = self.call.heard_ms() - position
        start = 0.0
        assert reply.record is not None
        for utterance in reply.utterances:
            end = start + utterance.spoken.duration_ms
            if end > position and utterance.audio:
                offset = int(max(0.0, position - start) * self._bytes_per_ms) // 2 * 2
                self.call.send_audio(bytes(utterance.audio[offset:]), turn_id)
                if utterance.complete:
                    self.call.flush_audio(turn_id)
            start = end
        reply.paused_at = None
        reply.pause_timer = None
        reply.resume_gate.set()
        self._publish("speaking", turn_id)

    # ============================================================== prepared phrases

    def prepare_phrases(self) -> None:
        """Synthesise the filler and the apology once (per voice), off the call path."""
        for text in (self.settings.filler_text, self.apology_text):
            if text:
                self.prepared.get(self.tts, text, self.sample_rate, self.language)

    def _prepared_ready(self, text: str) -> bytes | None:
        result = self.prepared.get(self.tts, text, self.sample_rate, self.language)
        return result.value if result.ready() else None

    def filler_watch(self, reply: Reply) -> None:
        """No first sentence after `filler_after_ms`: play the prepared filler, never silence."""
        self.clock.sleep(self.settings.filler_after_ms / 1000.0)
        if reply.queued_any or reply.turn.cancelled or not self.settings.filler_text:
            return
        prepared = self.prepared.get(self.tts, self.settings.filler_text, self.sample_rate, self.language)
        prepared.wait(timeout=self.settings.filler_after_ms / 1000.0 + 5.0)
        pcm = prepared.value if prepared.ready() else None
        if pcm is None or reply.queued_any or reply.turn.cancelled:
            return
        reply.timing.filler = self.clock.now()
        self.log.info("first token late: filler", extra={"turn": reply.turn.id})
        self.enqueue(reply, self.settings.filler_text, kind="filler", pcm=pcm)

    def play_apology_file(self) -> None:
        """TTS cannot speak the apology: play the apology file over the event socket."""
        if self.apology_file:
            result = self.call.play_file(self.apology_file)
            if not getattr(result, "ok", False):
                self.log.error("apology file did not play either")
        else:
            self.log.error("no way to speak the apology (TTS down, no apology file)")
