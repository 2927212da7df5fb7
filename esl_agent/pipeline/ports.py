"""What the pipeline needs from a call: the `CallControl` port the controller's `Call` implements.

The pipeline never talks ESL or WebSocket itself; unit tests give it an in-process fake.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class CallerInfo:
    """Who is calling, from the channel data of the connect reply."""

    uuid: str
    number: str  # Caller-Caller-ID-Number as FreeSWITCH gave it
    name: str = ""  # Caller-Caller-ID-Name
    destination: str = ""  # Caller-Destination-Number (our DID)
    sip_headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CommandResult:
    """The outcome of one FreeSWITCH command: ok, and the reply or -ERR text."""

    ok: bool
    reply: str = ""


class CallControl(Protocol):
    """Commands the pipeline may issue on its call. None of them blocks the others."""

    caller: CallerInfo

    def send_audio(self, pcm: bytes, turn_id: int) -> None:
        """Queue L16 mono PCM (at the fork sample rate) for the caller; dropped if turn is stale."""

    def flush_audio(self, turn_id: int) -> None:
        """Mark the end of a sentence: in play_audio mode this ships the file to FreeSWITCH."""

    def stop_audio(self) -> None:
        """Barge-in: silence at once (killAudio, uuid_break all, drop queued audio)."""

    def heard_ms(self) -> float:
        """How much of the audio sent since the last stop the caller has actually heard (ms)."""

    def playing(self) -> bool:
        """True while audio sent by the agent is still being played to the caller."""

    def play_file(self, path: str) -> CommandResult:
        """Play a prepared file (greeting, filler, apology) over the event socket."""

    def transfer(self, destination: str, dialplan: str = "XML", context: str = "default") -> CommandResult:
        """uuid_transfer the caller; destination must already have passed the dial policy."""

    def hangup(self, cause: str = "NORMAL_CLEARING") -> CommandResult:
        """Hang up with a cause."""

    def set_state(self, state: str, **fields: str) -> None:
        """Publish agent state (channel variables + CUSTOM esl_agent::state event)."""
