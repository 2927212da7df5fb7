"""The per-call conductor: caller audio -> STT -> end of turn -> LLM -> sentences -> TTS -> caller.

It stays thin and pushes decisions into small modules: `endpointing` (when the caller's turn is
over), `bargein` (whether speech during a reply interrupts it), `turns` (ids and cancellation),
`sentences` (where TTS can start) and `agent.history` (what the model sees as said).

One reply = one `Turn` with its own greenlet group: a generator greenlet (LLM stream, sentence
splitting, tools), a TTS greenlet per sentence (synthesis of sentence n+1 overlaps the playback of
sentence n), a speaker greenlet that sends the audio in order with the turn id, and a filler
watcher. Barge-in bumps the turn id, stops playback at once, kills the turn's greenlets (provider
code closes its streams in `finally`) and cuts the reply in the history to what was heard.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import gevent
import gevent.event
import gevent.lock
import gevent.pool
import gevent.queue

from esl_agent import logs
from esl_agent.agent.history import ConversationHistory, ReplyRecord, SpokenSentence, locate
from esl_agent.agent.speech_text import for_speech
from esl_agent.config import PipelineSettings
from esl_agent.errors import ProviderError, ProviderTimeout
from esl_agent.pipeline.bargein import BargeInDetector, Decision, PlaybackView, StateTuning
from esl_agent.pipeline.endpointing import EndOfTurnDetector
from esl_agent.pipeline.ports import CallControl
from esl_agent.pipeline.sentences import SentenceSplitter
from esl_agent.pipeline.turns import Clock, GeventClock, Turn, TurnClock
from esl_agent.providers.base import (
    LanguageModel,
    NoTurn,
    SpeechToText,
    SttStream,
    TextDelta,
    TextToSpeech,
    ToolCall,
    ToolSpec,
    Transcript,
    Usage,
)

# ------------------------------------------------------------------------------ collaborators


class ToolOutcome(Protocol):
    """What `tools.execute` returns (esl_agent.agent.tools.ToolResult)."""

    content: str
    ends_call: bool
    after_speech: Callable[[], Any] | None


class Tools(Protocol):
    """The LLM's tools (esl_agent.agent.tools.AgentTools).

    Optional: `speech_cancelled()` is called when a barge-in dropped a pending after-speech
    action (the tools may then allow a new transfer or hang-up).
    """

    def specs(self) -> list[ToolSpec]: ...

    def execute(self, tool_call: ToolCall) -> ToolOutcome: ...


class Greetings(Protocol):
    """Pre-rendered greetings (esl_agent.pipeline.greetings.GreetingCache)."""

    def lookup(self, caller_number: str) -> Any: ...  # a path or None

    def text_for(self, contact: Any) -> str: ...

    def miss(self, caller_number: str) -> Any: ...


class Contacts(Protocol):
    """Caller-ID lookup (esl_agent.agent.contacts.ContactStore)."""

    def by_number(self, caller_id: str | None) -> Any: ...


@dataclass
class _FailedTool:
    content: str
    ends_call: bool = False
    after_speech: Callable[[], Any] | None = None


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
            convert = _Resampler(tts.sample_rate, rate)
            pcm = b"".join(convert(c) for c in tts.synthesize(for_speech(text, language), NoTurn()))
            result.set(pcm + convert(b"", last=True) or None)
        except Exception as exc:  # a prepared phrase is optional
            logs.call_logger("-", __name__).warning("prepared phrase failed: %s", type(exc).__name__)
            result.set(None)


SHARED_PREPARED = PreparedAudio()


class _Resampler:
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


# ------------------------------------------------------------------------------ per turn


@dataclass
class TurnTiming:
    """Latency marks of one turn (clock seconds; None = did not happen) and its usage."""

    turn: int
    end_of_turn: float
    llm_first_token: float | None = None
    first_sentence: float | None = None
    tts_first_byte: float | None = None
    first_audio: float | None = None
    filler: float | None = None
    interrupted: float | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    tts_chars: int = 0


@dataclass
class CallUsage:
    """Usage of the whole call, for cost: STT audio seconds, LLM tokens, TTS characters."""

    stt_seconds: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    tts_chars: int = 0


class _Utterance:
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


_END = object()
_HEARD_TOLERANCE_MS = 250.0  # heard accounting of file playbacks is only this exact


@dataclass(eq=False)
class _Reply:
    """One turn's reply in flight: its utterance queue, playback position, pause and tool actions."""

    turn: Turn
    record: ReplyRecord | None
    timing: TurnTiming
    file_text: str = ""  # a greeting played from a file: no record, just what it says
    queue: gevent.queue.Queue = field(default_factory=gevent.queue.Queue)
    utterances: list[_Utterance] = field(default_factory=list)  # those whose audio started
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


# ------------------------------------------------------------------------------ the conductor


class Conversation:
    """Runs the conversation of one call over its `CallControl` port.

    Args:
        call: the call (the controller's `Call`, or a fake in tests).
        stt, llm, tts: the providers (the llm is usually a failover chain).
        tools: `specs()` and `execute(ToolCall)` (agent.tools.AgentTools).
        greetings: `lookup(number)`, `text_for(contact)`, `miss(number)` (pipeline.greetings).
        prompt_builder: contact (or None) -> system prompt, e.g.
            `lambda c: prompt.build_system_prompt(settings.agent, c, greeting=cache.text_for(c))`.
        settings: turn taking, barge-in, sentence streaming, filler, DTMF.
        sample_rate: the fork's sample rate (audio to and from the call).
        clock: time source (tests may inject one).
        contacts: caller-ID lookup for the greeting and the prompt; None = unknown caller.
        language: STT language and the language for spelling digits in TTS text.
        apology_text: spoken when a provider fails; `apology_file` is played if even that fails.
        human_contact: contact name `transfer_call` uses for the DTMF transfer key; empty = the
            key press goes to the model as a request to be transferred.
        prepared: cache of filler/apology audio (default: shared by the process).
        bargein_tuning: per-state barge-in rules (default from settings).
        llm_turn_timeout: a reply (one LLM round) must be complete within this (llm.turn_timeout).
        tts_timeout: the longest wait for the next audio chunk of a sentence.
    """

    def __init__(
        self,
        call: CallControl,
        stt: SpeechToText,
        llm: LanguageModel,
        tts: TextToSpeech,
        tools: Tools,
        greetings: Greetings,
        prompt_builder: Callable[[Any], str],
        settings: PipelineSettings,
        sample_rate: int = 8000,
        clock: Clock | None = None,
        *,
        contacts: Contacts | None = None,
        language: str = "en-US",
        apology_text: str = "Sorry, something went wrong on our side.",
        apology_file: str | None = None,
        human_contact: str = "",
        transfer_text: str = "Connecting you to a colleague now.",
        prepared: PreparedAudio | None = None,
        bargein_tuning: Mapping[str, StateTuning] | None = None,
        max_tool_rounds: int = 3,
        history_messages: int = 40,
        max_stt_restarts: int = 5,
        llm_turn_timeout: float = 20.0,
        tts_timeout: float = 10.0,
    ) -> None:
        self.call = call
        self.stt = stt
        self.llm = llm
        self.tts = tts
        self.tools = tools
        self.greetings = greetings
        self.prompt_builder = prompt_builder
        self.settings = settings
        self.sample_rate = sample_rate
        self.clock: Clock = clock or GeventClock()
        self.contacts = contacts
        self.language = language
        self.apology_text = apology_text
        self.apology_file = apology_file
        self.human_contact = human_contact
        self.transfer_text = transfer_text
        self.prepared = prepared or SHARED_PREPARED
        self.max_tool_rounds = max_tool_rounds
        self.max_stt_restarts = max_stt_restarts
        self.llm_turn_timeout = llm_turn_timeout
        self.tts_timeout = tts_timeout
        self.log = logs.call_logger(call.caller.uuid, "esl_agent.pipeline")
        self.turns = TurnClock()
        self.history = ConversationHistory("", history_messages)
        self.detector = BargeInDetector(settings, self._playback_view, bargein_tuning)
        self.endpointer = EndOfTurnDetector(settings, self._on_end_of_turn, self.clock)
        self.timings: list[TurnTiming] = []
        self.usage = CallUsage()
        self.contact: Any = None
        self._group = gevent.pool.Group()
        self._stream: SttStream | None = None
        self._reply: _Reply | None = None
        self._closed = False
        self._ending = False
        self._state: tuple[str, int] = ("", -1)
        self._bytes_per_ms = sample_rate * 2 / 1000.0
        self._tool_specs: list[ToolSpec] | None = None
        self._dtmf_ids = itertools.count(1)

    # ============================================================== the port the Call drives

    def start(self) -> None:
        """Greet the caller (a prepared file, else live TTS) and start listening."""
        number = self.call.caller.number
        try:
            self.contact = self.contacts.by_number(number) if self.contacts and number else None
        except Exception:  # an unknown caller is a fine fallback
            self.log.exception("contact lookup failed")
        greeting = self.greetings.text_for(self.contact)
        self.history = ConversationHistory(self.prompt_builder(self.contact), self.history.max_messages)
        self._group.spawn(self._listen)
        path = None
        try:
            path = self.greetings.lookup(number)
        except Exception:
            self.log.exception("greeting lookup failed")
        if path is not None and self._play_greeting_file(str(path), greeting):
            return
        with contextlib.suppress(Exception):
            self.greetings.miss(number)
        self.log.info("greeting from live TTS")
        self._begin_reply(None, fixed=greeting)

    def on_caller_audio(self, pcm: bytes) -> None:
        """Every fork frame from the caller: push to the recogniser (cheap, never blocks long)."""
        stream = self._stream
        if stream is None:
            return
        self.usage.stt_seconds += len(pcm) / (2.0 * self.sample_rate)
        try:
            stream.push(pcm)
        except ProviderError:
            pass  # the listener notices the broken stream and reopens it

    def on_dtmf(self, digit: str) -> None:
        """A key press: the transfer key goes to a human, other keys reach the model as text."""
        if self._closed or self._ending:
            return
        self.log.info("dtmf", extra={"digit": digit if digit.isdigit() else "?"})
        if digit == self.settings.dtmf_transfer_key:
            self._group.spawn(self._dtmf_transfer, digit)
        else:
            self._group.spawn(self._begin_reply, f"The caller pressed {digit}.")

    def on_playback_stop(self, path: str | None = None, status: str | None = None) -> None:
        """FreeSWITCH finished or broke a file playback (informational)."""
        self.log.debug("playback stop %s", status or "-")

    def close(self) -> None:
        """Hangup or end: cancel everything once, close the STT stream."""
        if self._closed:
            return
        self._closed = True
        self.endpointer.cancel()
        reply = self._reply
        if reply is not None and reply.pause_timer is not None:
            reply.pause_timer.kill(block=False)
        self.turns.interrupt("call closed")
        stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()
        self._group.kill(block=False)
        self.log.info("conversation closed", extra={"turns": len(self.timings)})

    # ============================================================== listening

    def _listen(self) -> None:
        """Read transcripts; reopen a dropped recognition stream (bounded)."""
        failures = 0
        while not self._closed:
            try:
                stream = self.stt.open_stream(sample_rate=self.sample_rate, language=self.language)
            except ProviderError as exc:
                self.log.warning("speech recognition failed to open: %s", type(exc).__name__)
                stream = None
            if stream is not None:
                self._stream = stream
                try:
                    for transcript in stream:
                        failures = 0
                        try:
                            self._on_transcript(transcript)
                        except Exception:  # one bad decision must not deafen the call
                            self.log.exception("transcript handling failed")
                        if self._closed:
                            return
                except ProviderError as exc:
                    self.log.warning("speech recognition stream failed: %s", type(exc).__name__)
                except Exception:
                    self.log.exception("speech recognition stream raised")
                finally:
                    if self._stream is stream:
                        self._stream = None
                    with contextlib.suppress(Exception):
                        stream.close()
            if self._closed:
                return
            failures += 1
            if failures > self.max_stt_restarts:
                self.log.error("speech recognition keeps failing; ending the call politely")
                self._give_up()
                return
            self.log.info("reopening speech recognition (attempt %d)", failures)
            self.clock.sleep(min(2.0, 0.1 * failures))

    def _on_transcript(self, transcript: Transcript) -> None:
        reply = self._reply
        if reply is not None and not reply.finished.is_set() and self._heard_all(reply):
            self._complete(reply)  # heard in full a moment ago: speech now is a new turn
        if self._closed or self._ending:
            return
        if reply is not None and self._busy(reply):
            decision = self.detector.assess(transcript)
            if decision is Decision.IGNORE:
                self.log.debug("caller speech ignored: %s", self.detector.last_reason)
                return
            if decision is Decision.PAUSE:
                self._pause(reply, len(self.detector.real_words(transcript.text)))
                return
            self.log.info("barge-in: %s", self.detector.last_reason,
                          extra={"turn": reply.turn.id, "text": logs.redact_text(transcript.text)})
            self._interrupt("barge-in")
        self.endpointer.on_transcript(transcript)

    def _on_end_of_turn(self, text: str) -> None:
        self.log.info("caller turn over", extra={"text": logs.redact_text(text)})
        try:
            self._begin_reply(text)
        except Exception:  # runs in a timer greenlet: never let a bug end it silently
            self.log.exception("could not start the reply")

    # ============================================================== replies

    def _begin_reply(
        self,
        user_text: str | None,
        *,
        fixed: str | None = None,
        tool: tuple[ToolCall, ToolOutcome] | None = None,
    ) -> _Reply | None:
        """Start a turn: the LLM's answer to `user_text`, or a fixed text (greeting, DTMF)."""
        if self._closed or self._ending:
            return None
        old = self._reply
        if old is not None and self._busy(old):
            self._interrupt("new turn")
        if user_text is not None:
            self.history.add_user(user_text)
        turn = self.turns.begin()
        timing = TurnTiming(turn.id, self.clock.now())
        self.timings.append(timing)
        reply = _Reply(turn, self.history.begin_reply(), timing)
        self._reply = reply
        if tool is not None:
            call, outcome = tool
            assert reply.record is not None
            reply.record.add_tool_calls([call])
            reply.record.add_tool_result(call.id, outcome.content)
            if outcome.after_speech is not None:
                reply.after_speech.append(outcome.after_speech)
            reply.ends_call = bool(outcome.ends_call)
        self._publish("thinking", turn.id, user_text)
        turn.spawn(self._speak, reply)
        reply.worker = turn.spawn(self._generate, reply, fixed)
        if fixed is None:
            self._prepare_phrases()  # while the model thinks; a fixed text warms after its audio
            turn.spawn(self._filler_watch, reply)
        return reply

    def _generate(self, reply: _Reply, fixed: str | None) -> None:
        """Produce the reply's sentences: a fixed text, or LLM rounds with tools in between."""
        turn = reply.turn
        try:
            if fixed is not None:
                splitter = SentenceSplitter(self.settings.max_clause_chars)
                for sentence in splitter.push(fixed) + splitter.flush():
                    self._enqueue(reply, sentence)
            else:
                for round_no in itertools.count():
                    calls = self._llm_round(reply)
                    if not calls or turn.cancelled:
                        break
                    if round_no >= self.max_tool_rounds:
                        self.log.warning("too many tool rounds in one turn; stopping", extra={"turn": turn.id})
                        break
                    self._run_tools(reply, calls)
                    if turn.cancelled:
                        return
        except Exception as exc:  # ProviderError, or a broken provider: apologise
            if turn.cancelled:
                return
            if not isinstance(exc, ProviderError):
                self.log.exception("language model raised")
            self.log.warning("language model failed: %s", type(exc).__name__, extra={"turn": turn.id})
            reply.after_speech.clear()
            reply.ends_call = False
            self._enqueue(reply, self.apology_text, kind="apology")
        reply.queue.put(_END)

    def _llm_round(self, reply: _Reply) -> list[ToolCall]:
        """Stream one LLM answer; sentences go to TTS as soon as they are complete."""
        turn, timing = reply.turn, reply.timing
        streaming = self.settings.sentence_streaming
        splitter = SentenceSplitter(self.settings.max_clause_chars)
        whole: list[str] = []
        calls: list[ToolCall] = []
        events = self.llm.stream(self.history.messages(), self._specs(), turn)
        deadline = gevent.Timeout(
            self.llm_turn_timeout, ProviderTimeout(f"no complete reply in {self.llm_turn_timeout:g} s")
        )
        deadline.start()
        try:
            for event in events:
                if turn.cancelled:
                    return []
                if isinstance(event, TextDelta):
                    if timing.llm_first_token is None:
                        timing.llm_first_token = self.clock.now()
                    if streaming:
                        for sentence in splitter.push(event.text):
                            self._enqueue(reply, sentence)
                    else:
                        whole.append(event.text)
                elif isinstance(event, ToolCall):
                    if timing.llm_first_token is None:
                        timing.llm_first_token = self.clock.now()
                    if streaming and not calls:
                        for sentence in splitter.flush():  # text before a tool call is complete
                            self._enqueue(reply, sentence)
                    calls.append(event)
                elif isinstance(event, Usage):
                    timing.tokens_in += event.input_tokens
                    timing.tokens_out += event.output_tokens
                    self.usage.tokens_in += event.input_tokens
                    self.usage.tokens_out += event.output_tokens
        finally:
            deadline.cancel()
            _close(events)
        if turn.cancelled:
            return []
        rest = splitter.flush() if streaming else ["".join(whole).strip()]
        for sentence in rest:
            if sentence:
                self._enqueue(reply, sentence)
        return calls

    def _run_tools(self, reply: _Reply, calls: Sequence[ToolCall]) -> None:
        assert reply.record is not None
        reply.record.add_tool_calls(calls)
        for tool_call in calls:
            self.log.info("tool call", extra={"tool": tool_call.name, "turn": reply.turn.id})
            # In the call's group: a tool that started finishes even if the caller barges in.
            outcome = self._group.spawn(self._execute_tool, tool_call).get()
            reply.record.add_tool_result(tool_call.id, outcome.content)
            if reply.turn.cancelled:
                return
            if outcome.after_speech is not None:
                reply.after_speech.append(outcome.after_speech)
            reply.ends_call = reply.ends_call or bool(outcome.ends_call)

    def _execute_tool(self, tool_call: ToolCall) -> ToolOutcome:
        try:
            return self.tools.execute(tool_call)
        except Exception:  # a tool failure is spoken about, never fatal
            self.log.exception("tool raised", extra={"tool": tool_call.name})
            return _FailedTool(f"The {tool_call.name} tool failed. Apologise briefly and offer another way to help.")

    def _specs(self) -> list[ToolSpec]:
        if self._tool_specs is None:
            self._tool_specs = list(self.tools.specs())
        return self._tool_specs

    # ============================================================== speech out

    def _enqueue(self, reply: _Reply, text: str, kind: str = "sentence", pcm: bytes | None = None) -> None:
        """Queue a sentence for the speaker; its synthesis starts now (in parallel with playback)."""
        if reply.turn.cancelled:
            return
        if reply.timing.first_sentence is None and kind == "sentence":
            reply.timing.first_sentence = self.clock.now()
        assert reply.record is not None
        utterance = _Utterance(reply.record.say(text, in_history=kind != "filler"), kind)
        reply.queued_any = True
        if pcm is None and kind == "apology":
            pcm = self._prepared_ready(self.apology_text)
        if pcm is not None:
            utterance.chunks.put(pcm)
            utterance.chunks.put(_END)
        else:
            reply.tts_jobs.append(reply.turn.spawn(self._synthesize, reply, utterance))
        reply.queue.put(utterance)

    def _synthesize(self, reply: _Reply, utterance: _Utterance) -> None:
        turn = reply.turn
        with reply.tts_slots:
            if turn.cancelled:
                return
            convert = _Resampler(self.tts.sample_rate, self.sample_rate)
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
                utterance.chunks.put(_END)
            except ProviderError as exc:
                utterance.chunks.put(exc)
            except Exception as exc:  # a broken provider must not kill the call
                self.log.exception("text to speech raised")
                utterance.chunks.put(ProviderError(f"{type(exc).__name__}"))
            finally:
                _close(chunks)

    def _speak(self, reply: _Reply) -> None:
        """Send the reply's utterances in order, each as its audio arrives; then finish the turn."""
        turn = reply.turn
        apologised = False
        while True:
            utterance = reply.queue.get()
            if utterance is _END:
                break
            try:
                self._play(reply, utterance)
            except ProviderError as exc:
                if turn.cancelled:
                    return
                self.log.warning("text to speech failed: %s", type(exc).__name__, extra={"turn": turn.id})
                if apologised or utterance.kind == "apology":
                    self._play_apology_file()
                    break
                apologised = True
                self._abandon_generation(reply)
                self._enqueue(reply, self.apology_text, kind="apology")
                reply.queue.put(_END)
            if turn.cancelled:
                return
        self._finish(reply)

    def _play(self, reply: _Reply, utterance: _Utterance) -> None:
        turn = reply.turn
        started = False
        while True:
            try:
                item = utterance.chunks.get(timeout=self.tts_timeout)
            except gevent.queue.Empty:
                raise ProviderTimeout(f"no speech audio within {self.tts_timeout:g} s") from None
            if item is _END:
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
                    self._prepare_phrases()
            self.call.send_audio(item, turn.id)
            utterance.audio += item
            utterance.spoken.duration_ms += len(item) / self._bytes_per_ms
        utterance.complete = True
        if started and not turn.cancelled:
            self.call.flush_audio(turn.id)

    def _abandon_generation(self, reply: _Reply) -> None:
        """Stop the LLM and the other TTS jobs of a reply whose audio cannot continue."""
        current = gevent.getcurrent()
        for job in [reply.worker, *reply.tts_jobs]:
            if job is not None and job is not current:
                job.kill(block=False)
        reply.after_speech.clear()
        reply.ends_call = False
        while not reply.queue.empty():
            dropped = reply.queue.get_nowait()
            if isinstance(dropped, _Utterance) and reply.record is not None:
                reply.record.unsay(dropped.spoken)

    def _finish(self, reply: _Reply) -> None:
        """After the last utterance was sent: wait until it was heard, then complete the turn."""
        reply.done_sending = True
        deadline = self.clock.now() + self._reply_ms(reply) / 1000.0 + 3.0
        while not reply.finished.is_set():
            if reply.turn.cancelled or self._closed:
                return
            if self._heard_all(reply):
                break
            if self.clock.now() > deadline and reply.resume_gate.is_set():
                self.log.warning("playback end not seen in time; going on", extra={"turn": reply.turn.id})
                break
            remaining = self._reply_ms(reply) - self._position(reply)
            self.clock.sleep(min(0.1, max(0.02, remaining / 1000.0)))
        self._complete(reply)

    def _heard_all(self, reply: _Reply) -> bool:
        """Everything of the reply was sent and played (within a small tolerance)."""
        return (
            reply.done_sending
            and reply.resume_gate.is_set()
            and not self.call.playing()
            and self._position(reply) >= self._reply_ms(reply) - _HEARD_TOLERANCE_MS
        )

    def _complete(self, reply: _Reply) -> None:
        """The reply was heard: run its tool actions (transfer, hang-up) or listen again. Once."""
        if reply.finished.is_set() or reply.turn.cancelled or self._closed:
            return
        reply.finished.set()
        if reply.after_speech or reply.ends_call:
            self._ending = reply.ends_call
            callbacks = list(reply.after_speech)
            self._group.spawn(self._run_after_speech, callbacks, reply.ends_call)
            return
        self._publish("listening", reply.turn.id)

    def _run_after_speech(self, callbacks: list[Callable[[], Any]], ends_call: bool) -> None:
        """Transfer / hang up once the confirmation was heard. Not interruptible once started."""
        failed = False
        for callback in callbacks:
            try:
                result = callback()
            except Exception:
                self.log.exception("after-speech action raised")
                failed = True
                continue
            if getattr(result, "ok", True) is False:
                self.log.warning("after-speech action failed: %s", getattr(result, "reply", "")[:80])
                failed = True
        if ends_call and not callbacks:
            self.call.hangup("NORMAL_CLEARING")
            return
        if failed and not self._closed:
            self._ending = False
            self._begin_reply("(The last action did not work. Tell the caller briefly and offer another way to help.)")

    # ============================================================== barge-in

    def _busy(self, reply: _Reply) -> bool:
        """The reply is still being generated, spoken or paused (caller speech may interrupt it)."""
        return not reply.finished.is_set() or reply.paused_at is not None or self.call.playing()

    def _position(self, reply: _Reply) -> float:
        """Milliseconds of this reply the caller has heard."""
        if reply.paused_at is not None:
            return reply.paused_at
        if reply.origin_ms is None:
            return 0.0
        return min(max(0.0, self.call.heard_ms() - reply.origin_ms), self._reply_ms(reply))

    @staticmethod
    def _reply_ms(reply: _Reply) -> float:
        return reply.record.spoken_ms if reply.record is not None else 0.0

    def _playback_view(self) -> PlaybackView:
        reply = self._reply
        if reply is None or not self._busy(reply):
            return PlaybackView("listening")
        if reply.file_text:
            return PlaybackView("speaking", sentence=reply.file_text, elapsed_ms=self.call.heard_ms())
        if reply.origin_ms is None or reply.record is None:
            return PlaybackView("thinking")
        if reply.paused_at is None and not self.call.playing():
            return PlaybackView("thinking")
        sentences = reply.record.sentences
        where = locate(sentences, self._position(reply))
        if where is None:
            return PlaybackView("thinking")
        index, elapsed = where
        previous = sentences[index - 1].text if index > 0 else ""
        return PlaybackView(
            "speaking", sentence=sentences[index].text, previous=previous, elapsed_ms=elapsed,
            paused=reply.paused_at is not None,
        )

    def _interrupt(self, reason: str) -> None:
        """Cancel the current reply: new turn id, silence at once, history cut to what was heard."""
        reply = self._reply
        heard = self._position(reply) if reply is not None else 0.0
        was_playing = reply is not None and reply.paused_at is None and (
            reply.origin_ms is not None or reply.file_text != ""
        )  # a paused reply was already stopped
        self.turns.interrupt(reason)
        if was_playing or self.call.playing():
            self.call.stop_audio()
        if reply is None:
            return
        if reply.pause_timer is not None:
            reply.pause_timer.kill(block=False)
        reply.timing.interrupted = self.clock.now()
        if reply.after_speech and not reply.finished.is_set():
            self._after_speech_dropped()
        if reply.record is not None:
            reply.record.cut(heard)
        reply.finished.set()
        reply.paused_at = None
        self._reply = None
        self.log.info("reply interrupted (%s)", reason, extra={"turn": reply.turn.id, "heard_ms": int(heard)})
        self._publish("listening", self.turns.current)

    def _pause(self, reply: _Reply, words: int) -> None:
        """Maybe an interruption: stop playback, resume if no more words follow in time."""
        if reply.file_text:
            return  # a greeting file cannot be resumed: only a real interruption stops it
        if reply.paused_at is None:
            if reply.origin_ms is None:
                return
            reply.paused_at = self._position(reply)
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
        reply.pause_timer = self.clock.call_later(
            self.detector.false_interruption_ms / 1000.0, self._false_interruption, reply
        )

    def _false_interruption(self, reply: _Reply) -> None:
        if reply is not self._reply or reply.turn.cancelled or reply.paused_at is None or self._closed:
            return
        self.log.info("false interruption: resuming", extra={"turn": reply.turn.id})
        self._resume(reply)

    def _resume(self, reply: _Reply) -> None:
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

    # ============================================================== greeting, DTMF, fallbacks

    def _play_greeting_file(self, path: str, text: str) -> bool:
        turn = self.turns.begin()
        timing = TurnTiming(turn.id, self.clock.now(), first_audio=self.clock.now())
        reply = _Reply(turn, None, timing, file_text=text)
        result = self.call.play_file(path)
        if not getattr(result, "ok", False):
            self.log.warning("greeting file did not play: %s", getattr(result, "reply", "")[:80])
            return False
        self._reply = reply
        reply.origin_ms = 0.0
        reply.finished.set()  # busy only while the file plays (call.playing())
        self.history.add_assistant(text)
        self.log.info("greeting from file")
        self._publish("speaking", turn.id)
        return True

    def _dtmf_transfer(self, digit: str) -> None:
        request = f"The caller pressed {digit} to talk to a person."
        if not self.human_contact:
            self._begin_reply(request + " Transfer them to a colleague.")
            return
        tool_call = ToolCall(f"dtmf-{next(self._dtmf_ids)}", "transfer_call", {"name": self.human_contact})
        outcome = self._execute_tool(tool_call)
        if outcome.after_speech is None:
            self.log.warning("dtmf transfer refused by the tools; asking the model")
            self._begin_reply(request)
            return
        self._begin_reply(request, fixed=self.transfer_text, tool=(tool_call, outcome))

    def _prepare_phrases(self) -> None:
        """Synthesise the filler and the apology once (per voice), off the call path."""
        for text in (self.settings.filler_text, self.apology_text):
            if text:
                self.prepared.get(self.tts, text, self.sample_rate, self.language)

    def _prepared_ready(self, text: str) -> bytes | None:
        result = self.prepared.get(self.tts, text, self.sample_rate, self.language)
        return result.value if result.ready() else None

    def _filler_watch(self, reply: _Reply) -> None:
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
        self._enqueue(reply, self.settings.filler_text, kind="filler", pcm=pcm)

    def _after_speech_dropped(self) -> None:
        """A barge-in cancelled a transfer/hang-up before it ran: let the tools allow a new one."""
        self.log.info("pending call-ending action cancelled by the caller")
        hook = getattr(self.tools, "speech_cancelled", None)
        if hook is not None:
            try:
                hook()
            except Exception:
                self.log.exception("tools.speech_cancelled failed")

    def _play_apology_file(self) -> None:
        if self.apology_file:
            result = self.call.play_file(self.apology_file)
            if not getattr(result, "ok", False):
                self.log.error("apology file did not play either")
        else:
            self.log.error("no way to speak the apology (TTS down, no apology file)")

    def _give_up(self) -> None:
        """The recogniser cannot be reopened: apologise and hang up (never silent dead air)."""
        reply = self._begin_reply(None, fixed=self.apology_text)
        if reply is not None:
            reply.ends_call = True

    def _publish(self, state: str, turn_id: int, text: str | None = None) -> None:
        if self._state == (state, turn_id) and text is None:
            return
        self._state = (state, turn_id)
        fields = {"turn": str(turn_id)}
        if text:
            fields["transcript"] = logs.redact_text(text)
        try:
            self.call.set_state(state, **fields)
        except Exception:  # publishing state must never break the conversation
            self.log.exception("set_state failed")


def _close(iterator: Iterator[Any] | Any) -> None:
    close = getattr(iterator, "close", None)
    if close is not None:
        with contextlib.suppress(Exception):
            close()
