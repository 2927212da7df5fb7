"""In-process fakes for the agent tests: a call, a dial policy and an audit trail."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from esl_agent.pipeline.ports import CallerInfo, CommandResult


@dataclass
class FakeCall:
    """Implements the CallControl commands the tools use and records them."""

    caller: CallerInfo = field(default_factory=lambda: CallerInfo(uuid="call-1", number="+436641234567"))
    transfers: list[tuple[str, str, str]] = field(default_factory=list)
    hangups: list[str] = field(default_factory=list)

    def transfer(self, destination: str, dialplan: str = "XML", context: str = "default") -> CommandResult:
        self.transfers.append((destination, dialplan, context))
        return CommandResult(True, "+OK")

    def hangup(self, cause: str = "NORMAL_CLEARING") -> CommandResult:
        self.hangups.append(cause)
        return CommandResult(True, "+OK")

    def send_audio(self, pcm: bytes, turn_id: int) -> None: ...
    def flush_audio(self, turn_id: int) -> None: ...
    def stop_audio(self) -> None: ...
    def heard_ms(self) -> float: return 0.0
    def playing(self) -> bool: return False
    def play_file(self, path: str) -> CommandResult: return CommandResult(True)
    def set_state(self, state: str, **fields: str) -> None: ...


@dataclass(frozen=True)
class Decision:
    allowed: bool
    number: str
    rule: str
    spoken: str = ""


class FakePolicy:
    """Blocks premium prefixes, allows E.164 numbers of AT/DE, refuses everything else."""

    PREMIUM = ("+43900", "+43930", "+49900")

    def __init__(self) -> None:
        self.checked: list[tuple[str, str | None, str]] = []

    def check(self, number: str, *, caller: str | None = None, direction: str = "out") -> Decision:
        self.checked.append((number, caller, direction))
        compact = re.sub(r"[ \-./()]", "", number)
        if compact.startswith("0") and not compact.startswith("00"):
            compact = "+43" + compact[1:]
        if not re.fullmatch(r"\+[1-9]\d{7,14}", compact):
            return Decision(False, number, "invalid:syntax", "I'm sorry, that is not a number I can dial.")
        if compact.startswith(self.PREMIUM):
            return Decision(False, compact, "block:premium", "I'm sorry, I can't connect you to premium numbers.")
        if not compact.startswith(("+43", "+49")):
            return Decision(False, compact, "deny:country", "I can only connect you within Austria and Germany.")
        return Decision(True, compact, "allow:country")


class NaivePolicy:
    """A broken policy that allows anything, echoing the input: the tools must still be safe."""

    def __init__(self) -> None:
        self.checked: list[str] = []

    def check(self, number: str, *, caller: str | None = None, direction: str = "out") -> Decision:
        self.checked.append(number)
        return Decision(True, number, "allow:everything")


class FakeAudit:
    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def append(self, actor: str, action: str, number: str, decision: Any, **fields: Any) -> None:
        self.entries.append(
            {"actor": actor, "action": action, "number": number, "decision": decision, **fields}
        )
