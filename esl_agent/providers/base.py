"""The three small provider interfaces (structural protocols) and their value types.

Speech to text: `SpeechToText.open_stream()` -> `SttStream`; push PCM, iterate `Transcript`s.
Language model: `LanguageModel.stream(messages, tools, turn)` yields `TextDelta`, `ToolCall`, `Usage`.
Text to speech: `TextToSpeech.synthesize(text, turn)` yields L16 mono PCM chunks at `sample_rate`.

Providers never read the environment or global config: their constructor takes options, an explicit
endpoint/base_url and the resolved secret. Deadlines, retries and failover wrap them from outside.
All audio here is signed 16-bit little-endian mono PCM ("L16").
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

# ------------------------------------------------------------------------------------- turns


class TurnToken(Protocol):
    """What providers see of a turn: its id and whether it has been cancelled (barge-in)."""

    id: int

    @property
    def cancelled(self) -> bool: ...


@dataclass
class NoTurn:
    """A turn that is never cancelled (greeting warm-up, tests)."""

    id: int = 0
    cancelled: bool = False


# --------------------------------------------------------------------------------------- STT


@dataclass(frozen=True)
class Transcript:
    """One recognition result; `final` closes an utterance, interim ones may change."""

    text: str
    final: bool
    stability: float = 0.0
    confidence: float = 0.0


class SttStream(Protocol):
    """One streaming recognition for one call. Iterating blocks (cooperatively) for results."""

    def push(self, pcm: bytes) -> None: ...

    def close(self) -> None: ...

    def __iter__(self) -> Iterator[Transcript]: ...


@runtime_checkable
class SpeechToText(Protocol):
    name: str

    def open_stream(self, *, sample_rate: int, language: str) -> SttStream: ...


# --------------------------------------------------------------------------------------- LLM


@dataclass(frozen=True)
class ToolSpec:
    """A tool the model may call: name, description and a JSON schema for its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Message:
    """A conversation message in a provider-neutral form.

    role: system | user | assistant | tool. An assistant message may carry tool_calls; a tool
    message answers one call by `tool_call_id`.
    """

    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    provider: str = ""


LlmEvent = TextDelta | ToolCall | Usage


@runtime_checkable
class LanguageModel(Protocol):
    name: str

    def stream(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec], turn: TurnToken
    ) -> Iterator[LlmEvent]:
        """Stream one reply. Stop early (closing the HTTP stream) once `turn.cancelled`."""
        ...


# --------------------------------------------------------------------------------------- TTS


@dataclass(frozen=True)
class TtsCapabilities:
    streaming: bool = False  # audio starts before the whole sentence is synthesised
    voices: tuple[str, ...] = field(default_factory=tuple)


@runtime_checkable
class TextToSpeech(Protocol):
    name: str
    sample_rate: int
    voice: str

    def synthesize(self, text: str, turn: TurnToken) -> Iterator[bytes]:
        """Yield L16 mono PCM chunks at `sample_rate` for one sentence; stop once cancelled."""
        ...
