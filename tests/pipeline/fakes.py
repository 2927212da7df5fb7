"""In-process fakes of the pipeline's collaborators, each recording what crossed it.

FakeCall simulates playback from the audio length: nothing plays until the test calls
`advance(ms)` / `play_all()`, so "what the caller heard" is exactly what the test let play.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import gevent.queue

from esl_agent.errors import ProviderError
from esl_agent.pipeline.ports import CallerInfo, CommandResult
from esl_agent.providers.base import (
    LlmEvent,
    Message,
    TextDelta,
    ToolCall,
    ToolSpec,
    Transcript,
    TurnToken,
    Usage,
)

RATE = 8000
BYTES_PER_MS = RATE * 2 // 1000  # 16


def wait_until(predicate: Callable[[], Any], timeout: float = 3.0, what: str = "condition") -> Any:
    """Wait (cooperatively) until predicate() is truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        gevent.sleep(0.002)


# ------------------------------------------------------------------------------ call


@dataclass
class Sent:
    at: float
    turn_id: int
    pcm: bytes
    stale: bool  # the real Call drops it (turn already stopped)


class FakeCall:
    """A CallControl that records every command with a timestamp and simulates playback."""

    def __init__(self, number: str = "+43664123456", uuid: str = "call-1") -> None:
        self.caller = CallerInfo(uuid=uuid, number=number)
        self.events: list[tuple[float, str, Any]] = []
        self.sent: list[Sent] = []
        self.states: list[tuple[str, dict[str, str]]] = []
        self.files: list[str] = []
        self.transfers: list[str] = []
        self.hangups: list[str] = []
        self.flushes: list[int] = []
        self.stops = 0
        self.queued_ms = 0.0  # sent, not yet played
        self.played_ms = 0.0  # played since the last stop
        self.played_total: list[bytes] = []  # audio the caller actually heard, in order
        self._queue: list[bytes] = []
        self._dead_turn = -1
        self._max_turn = -1
        self.play_file_ok = True

    def _log(self, name: str, arg: Any = None) -> None:
        self.events.append((time.monotonic(), name, arg))

    # CallControl
    def send_audio(self, pcm: bytes, turn_id: int) -> None:
        stale = turn_id <= self._dead_turn
        self.sent.append(Sent(time.monotonic(), turn_id, bytes(pcm), stale))
        self._log("send_audio", (turn_id, len(pcm)))
        if stale:
            return
        self._max_turn = max(self._max_turn, turn_id)
        self._queue.append(bytes(pcm))
        self.queued_ms += len(pcm) / BYTES_PER_MS

    def flush_audio(self, turn_id: int) -> None:
        self.flushes.append(turn_id)
        self._log("flush_audio", turn_id)

    def stop_audio(self) -> None:
        self.stops += 1
        self._log("stop_audio")
        self._dead_turn = max(self._dead_turn, self._max_turn)
        self._queue.clear()
        self.queued_ms = 0.0
        self.played_ms = 0.0

    def heard_ms(self) -> float:
        return self.played_ms

    def playing(self) -> bool:
        return self.queued_ms > 0

    def play_file(self, path: str) -> CommandResult:
        self.files.append(path)
        self._log("play_file", path)
        return CommandResult(self.play_file_ok, "+OK" if self.play_file_ok else "-ERR no file")

    def transfer(self, destination: str, dialplan: str = "XML", context: str = "default") -> CommandResult:
        self.transfers.append(destination)
        self._log("transfer", destination)
        return CommandResult(True, "+OK")

    def hangup(self, cause: str = "NORMAL_CLEARING") -> CommandResult:
        self.hangups.append(cause)
        self._log("hangup", cause)
        return CommandResult(True, "+OK")

    def set_state(self, state: str, **fields: str) -> None:
        self.states.append((state, dict(fields)))
        self._log("set_state", state)

    # simulation
    def advance(self, ms: float) -> None:
        """Let the caller hear `ms` more of the queued audio."""
        left = ms * BYTES_PER_MS
        left = int(left) // 2 * 2
        while left > 0 and self._queue:
            head = self._queue[0]
            take = head[:left]
            self.played_total.append(take)
            left -= len(take)
            if len(take) == len(head):
                self._queue.pop(0)
            else:
                self._queue[0] = head[len(take):]
            self.played_ms += len(take) / BYTES_PER_MS
            self.queued_ms -= len(take) / BYTES_PER_MS
        self.queued_ms = max(0.0, self.queued_ms)
        self._log("played", ms)

    def play_all(self) -> None:
        self.advance(self.queued_ms + 1)

    # helpers for assertions
    def audio_of_turn(self, turn_id: int) -> bytes:
        return b"".join(s.pcm for s in self.sent if s.turn_id == turn_id)

    def index(self, name: str, start: int = 0) -> int:
        for i, (_, n, _) in enumerate(self.events[start:], start):
            if n == name:
                return i
        return -1

    def state_names(self) -> list[str]:
        return [s for s, _ in self.states]


# ------------------------------------------------------------------------------ TTS


def tone(text: str, ms_per_char: int = 10) -> bytes:
    """The fake TTS audio of `text`: a byte pattern derived from the text, 10 ms per character."""
    marker = (sum(map(ord, text)) % 200 + 20).to_bytes(1, "little")
    return (marker + b"\x00") * (len(text) * ms_per_char * BYTES_PER_MS // 2)


class FakeTts:
    name = "fake-tts"
    voice = "v1"
    sample_rate = RATE

    def __init__(self) -> None:
        self.requests: list[tuple[float, str, int]] = []  # (time, text, turn id)
        self.closed: list[str] = []
        self.gates: dict[str, gevent.event.Event] = {}  # text fragment -> wait before audio
        self.fail: set[str] = set()  # text fragments that raise ProviderError
        self.latency: Callable[[str], float] | None = None  # seconds before a sentence's audio

    def texts(self) -> list[str]:
        return [t for _, t, _ in self.requests]

    def synthesize(self, text: str, turn: TurnToken) -> Iterator[bytes]:
        self.requests.append((time.monotonic(), text, turn.id))
        try:
            for fragment, gate in self.gates.items():
                if fragment in text:
                    gate.wait()
            if any(f in text for f in self.fail):
                raise ProviderError("tts down")
            if self.latency is not None:
                gevent.sleep(self.latency(text))
            audio = tone(text)
            half = len(audio) // 2 // 2 * 2
            for chunk in (audio[:half], audio[half:]):
                if turn.cancelled:
                    return
                yield chunk
        finally:
            self.closed.append(text)


# ------------------------------------------------------------------------------ LLM


@dataclass
class Wait:
    event: gevent.event.Event


@dataclass
class Raise:
    exc: Exception


@dataclass
class Sleep:
    seconds: float


@dataclass
class LlmCall:
    messages: list[Message]
    tools: list[ToolSpec]
    turn: TurnToken
    closed: bool = False
    finished: bool = False
    finished_at: float = 0.0
    waiting: bool = False
    cancelled_seen: bool = False


@dataclass
class FakeLlm:
    """Streams scripted replies: each script is a list of str / ToolCall / Usage / Wait / Raise."""

    scripts: list[list[Any]] = field(default_factory=list)
    name: str = "fake-llm"
    calls: list[LlmCall] = field(default_factory=list)

    def stream(self, messages: Sequence[Message], tools: Sequence[ToolSpec], turn: TurnToken) -> Iterator[LlmEvent]:
        record = LlmCall(list(messages), list(tools), turn)
        self.calls.append(record)
        script = self.scripts.pop(0) if self.scripts else ["Okay."]
        return self._run(script, record)

    def _run(self, script: list[Any], record: LlmCall) -> Iterator[LlmEvent]:
        try:
            for step in script:
                if record.turn.cancelled:
                    record.cancelled_seen = True
                    return
                if isinstance(step, Wait):
                    record.waiting = True
                    step.event.wait()
                    record.waiting = False
                elif isinstance(step, Raise):
                    raise step.exc
                elif isinstance(step, Sleep):
                    gevent.sleep(step.seconds)
                elif isinstance(step, str):
                    yield TextDelta(step)
                else:
                    yield step
            record.finished = True
            record.finished_at = time.monotonic()
        finally:
            record.closed = True


def deltas(text: str, size: int = 4) -> list[str]:
    """Split text into small deltas the way a model streams tokens."""
    return [text[i:i + size] for i in range(0, len(text), size)]


# ------------------------------------------------------------------------------ STT


class FakeSttStream:
    def __init__(self) -> None:
        self.queue: gevent.queue.Queue = gevent.queue.Queue()
        self.pushed = bytearray()
        self.closed = False

    def push(self, pcm: bytes) -> None:
        self.pushed += pcm

    def close(self) -> None:
        self.closed = True
        self.queue.put(StopIteration)

    def __iter__(self) -> Iterator[Transcript]:
        while True:
            item = self.queue.get()
            if item is StopIteration:
                return
            if isinstance(item, Exception):
                raise item
            yield item


class FakeStt:
    name = "fake-stt"

    def __init__(self) -> None:
        self.streams: list[FakeSttStream] = []
        self.opened = gevent.event.Event()

    def open_stream(self, *, sample_rate: int, language: str) -> FakeSttStream:
        stream = FakeSttStream()
        self.streams.append(stream)
        self.opened.set()
        return stream

    @property
    def stream(self) -> FakeSttStream:
        return wait_until(lambda: self.streams and not self.streams[-1].closed and self.streams[-1], what="stt")

    def say(self, text: str, final: bool = True) -> None:
        self.stream.queue.put(Transcript(text, final=final))

    def drop(self) -> None:
        self.stream.queue.put(ProviderError("stream dropped"))


# ------------------------------------------------------------------------------ tools, greetings


@dataclass
class FakeTools:
    results: dict[str, Any] = field(default_factory=dict)  # tool name -> ToolResult
    executed: list[ToolCall] = field(default_factory=list)
    cancelled: int = 0

    def speech_cancelled(self) -> None:
        self.cancelled += 1

    def specs(self) -> list[ToolSpec]:
        return [ToolSpec("transfer_call", "Transfer the caller", {"type": "object", "properties": {}})]

    def execute(self, tool_call: ToolCall) -> Any:
        self.executed.append(tool_call)
        return self.results[tool_call.name]


@dataclass
class FakeContact:
    name: str
    notes: str = ""


class FakeGreetings:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.looked_up: list[str] = []
        self.missed: list[str] = []

    def lookup(self, caller_number: str) -> Path | None:
        self.looked_up.append(caller_number)
        return self.path

    def text_for(self, contact: FakeContact | None) -> str:
        return f"Hello {contact.name}, how can I help?" if contact else "Hello, may I have your name?"

    def miss(self, caller_number: str) -> None:
        self.missed.append(caller_number)


class FakeContacts:
    def __init__(self, known: dict[str, FakeContact]) -> None:
        self.known = known

    def by_number(self, caller_id: str | None) -> FakeContact | None:
        return self.known.get(caller_id or "")


__all__ = [
    "FakeCall", "FakeContact", "FakeContacts", "FakeGreetings", "FakeLlm", "FakeStt", "FakeTools",
    "FakeTts", "Raise", "Sleep", "ToolCall", "Usage", "Wait", "deltas", "tone", "wait_until",
]
