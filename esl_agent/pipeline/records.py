"""What a conversation records of its call: latency marks per turn and usage for cost."""

from __future__ import annotations

from dataclasses import dataclass


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
