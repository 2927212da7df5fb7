"""The language model's tools: transfer, hang up, look up a contact, take a message.

`AgentTools.specs()` gives the `ToolSpec`s for the LLM; `AgentTools.execute(tool_call)` runs one
call and returns a `ToolResult` whose `content` goes back to the model as the tool message. It never
raises: an unknown tool or bad arguments give an error text the model can speak about.

Every number a transfer would dial passes the dial policy (`check(number, caller=..., direction=
"out")`, the interface of `esl_agent.policy.dialing.DialPolicy`) and lands in the audit trail;
a denial gives the model the policy's spoken sentence, and nothing is dialled. Internal extensions
are only reachable through a contact's configured `transfer` target, never from free text.

Call-ending tools (transfer, hang up) do not act at once: their `ToolResult.after_speech` is run by
the pipeline after the agent's confirming sentence has been played. Once started they are not
interruptible: a barge-in no longer cancels them.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from esl_agent.agent.contacts import Contact, ContactStore
from esl_agent.config import AgentSettings
from esl_agent.errors import EslAgentError
from esl_agent.logs import call_logger, redact_number, redact_text
from esl_agent.pipeline.ports import CallControl, CommandResult
from esl_agent.providers.base import Message, ToolCall, ToolSpec

__all__ = ["AgentTools", "AuditTrail", "DialDecision", "DialPolicyCheck", "ToolResult"]

_E164 = re.compile(r"\+[1-9]\d{6,14}")
_EXTENSION = re.compile(r"[1-9]\d{1,5}")
_MAX_NAME = 100
_MAX_NUMBER = 40
_MAX_MESSAGE = 2000
_AMBIGUOUS_WITHIN = 5.0  # score points: closer than this and we ask which one


class DialDecision(Protocol):
    """What a dial policy answers (esl_agent.policy.dialing.Decision)."""

    allowed: bool
    number: str
    rule: str
    spoken: str


class DialPolicyCheck(Protocol):
    """Anything with the dial policy's `check` method."""

    def check(self, number: str, *, caller: str | None = None, direction: Any = "out") -> Any: ...


class AuditTrail(Protocol):
    """Anything with the audit trail's `append` method."""

    def append(self, actor: str, action: str, number: str, decision: Any, **fields: Any) -> Any: ...


@dataclass(frozen=True)
class _LocalDecision:
    """A decision made here (a contact's extension, an unsafe policy answer), audited alike."""

    allowed: bool
    number: str
    rule: str
    spoken: str = ""


@dataclass(frozen=True)
class ToolResult:
    """What one tool call produced.

    Attributes:
        content: the tool message for the model (what happened, what to say next).
        ends_call: the call is ending (transfer or hang-up): the pipeline stops listening once
            the confirming sentence has been played.
        after_speech: run by the pipeline after that sentence has been played, not before; it
            returns the FreeSWITCH command's result. Not interruptible once started.
        is_error: the tool failed or refused; `content` explains it for the model.
    """

    content: str
    ends_call: bool = False
    after_speech: Callable[[], CommandResult] | None = None
    is_error: bool = False


_SPOKEN_INVALID = "I'm sorry, that doesn't look like a phone number I can dial."
_UNAUDITED = (
    "The transfer could not be recorded, so nothing was dialled. Tell the caller: \"I'm sorry, "
    "I can't place that call right now.\" Then offer to take a message."
)


class AgentTools:
    """The tools of one call, bound to its `CallControl`, contacts, dial policy and audit trail."""

    def __init__(
        self,
        call: CallControl,
        contacts: ContactStore,
        policy: DialPolicyCheck,
        audit: AuditTrail,
        settings: AgentSettings,
        *,
        messages_path: str | os.PathLike[str] = "var/messages.jsonl",
        transcript: Callable[[], Sequence[Message]] | None = None,
        min_score: float = 75.0,
    ) -> None:
        self.call = call
        self.contacts = contacts
        self.policy = policy
        self.audit = audit
        self.settings = settings
        self.messages_path = Path(messages_path)
        self.transcript = transcript
        self.min_score = min_score
        self._ending = False
        self._log = call_logger(call.caller.uuid, "esl_agent.agent.tools")
        self._handlers: dict[str, Callable[[dict[str, Any]], ToolResult]] = {
            "transfer_call": self._transfer_call,
            "lookup_contact": self._lookup_contact,
            "hang_up": self._hang_up,
            "take_message": self._take_message,
        }

    # ------------------------------------------------------------------------------ specs

    def speech_cancelled(self) -> None:
        """A barge-in cancelled the confirmation before its transfer/hang-up ran: allow new requests."""
        self._ending = False

    def specs(self) -> list[ToolSpec]:
        """The tool definitions handed to the language model."""
        return [
            ToolSpec(
                name="transfer_call",
                description=(
                    "Transfer the caller to a person from the contact list (by name) or to a phone "
                    "number the caller gave. Confirm with the caller first. After this tool "
                    "succeeds, say one short sentence that you are connecting them; the transfer "
                    "happens when you finish speaking."
                ),
                parameters={
                    "type": "object",
                    "properties": {
                        "name": {"type": "string", "description": "The person's name as spoken."},
                        "number": {
                            "type": "string",
                            "description": "A phone number with country or area code, digits only.",
                        },
                    },
                    "additionalProperties": False,
                },
            ),
            ToolSpec(
                name="lookup_contact",
                description=(
                    "Find a person in the contact list by (possibly misheard) name. Tells who "
                    "they are and whether the caller can be transferred to them."
                ),
                parameters={
                    "type": "object",
                    "properties": {"name": {"type": "string", "description": "The name as spoken."}},
                    "required": ["name"],
                    "additionalProperties": False,
                },
            ),
            ToolSpec(
                name="hang_up",
                description=(
                    "End the call when the conversation is finished or the caller asks to end it. "
                    "Say a short goodbye after calling this; the line is cut after that sentence."
                ),
                parameters={
                    "type": "object",
                    "properties": {"reason": {"type": "string", "description": "Why, briefly."}},
                    "additionalProperties": False,
                },
            ),
            ToolSpec(
                name="take_message",
                description=(
                    "Leave a message for the team: what the caller wants, who they are and how to "
                    "reach them. Read it back to the caller before calling this."
                ),
                parameters={
                    "type": "object",
                    "properties": {
                        "text": {"type": "string", "description": "The message, in full sentences."}
                    },
                    "required": ["text"],
                    "additionalProperties": False,
                },
            ),
        ]

    # ------------------------------------------------------------------------------ execute

    def execute(self, tool_call: ToolCall) -> ToolResult:
        """Run one tool call; never raises (errors become a result text for the model)."""
        handler = self._handlers.get(tool_call.name)
        if handler is None:
            self._log.warning("unknown tool", extra={"tool": tool_call.name[:40]})
            known = ", ".join(self._handlers)
            return _error(f"There is no tool named {tool_call.name[:40]!r}. Available: {known}.")
        if not isinstance(tool_call.arguments, dict):
            self._log.warning("tool arguments not an object", extra={"tool": tool_call.name})
            return _error(f"The arguments for {tool_call.name} must be a JSON object.")
        try:
            return handler(tool_call.arguments)
        except _BadArguments as exc:
            self._log.warning("bad tool arguments", extra={"tool": tool_call.name, "err": str(exc)})
            return _error(f"Invalid arguments for {tool_call.name}: {exc}")
        except Exception:
            self._log.exception("tool failed", extra={"tool": tool_call.name})
            return _error(
                f"The {tool_call.name} tool failed. Apologise briefly to the caller and offer "
                "to take a message instead."
            )

    # ------------------------------------------------------------------------------ tools

    def _transfer_call(self, args: dict[str, Any]) -> ToolResult:
        _only(args, {"name", "number"})
        name = _text(args, "name", _MAX_NAME)
        number = _text(args, "number", 200, truncate=False)
        if self._ending:
            return _error("The call is already ending; do not call more tools.")
        if not name and not number:
            raise _BadArguments("give the contact's name or a phone number")
        contact: Contact | None = None
        if name:
            picked = self._pick_contact(name)
            if isinstance(picked, ToolResult):
                if not number:
                    return picked
            else:
                contact = picked
        if contact is not None:
            target = contact.transfer_target
            if not target:
                return _error(
                    f"{contact.name} has no number to transfer to. Offer to take a message."
                )
            if _EXTENSION.fullmatch(target):
                decision: Any = _LocalDecision(True, target, "allow:contact extension")
                if not self._audit(target, decision, source="contact", contact=contact.id):
                    return _error(_UNAUDITED)
                return self._approved(target, contact.name)
            return self._checked_transfer(target, contact.name, source="contact", contact=contact.id)
        return self._checked_transfer(number, "", source="spoken")

    def _checked_transfer(self, raw: str, label: str, **fields: Any) -> ToolResult:
        caller = self.call.caller.number or None
        try:
            if len(raw) > _MAX_NUMBER:
                decision: Any = _LocalDecision(False, _printable(raw), "invalid:too long", _SPOKEN_INVALID)
            else:
                decision = self.policy.check(raw, caller=caller, direction="out")
        except Exception:
            self._log.exception("dial policy failed")
            decision = _LocalDecision(False, _printable(raw), "error:policy failed", _SPOKEN_INVALID)
        if decision.allowed and not _E164.fullmatch(str(decision.number)):
            # Defence in depth: whatever the policy says, only a plain E.164 string is dialled.
            decision = _LocalDecision(
                False, _printable(str(decision.number)), "deny:unsafe destination", _SPOKEN_INVALID
            )
        audited = self._audit(str(decision.number), decision, **fields)
        if decision.allowed and not audited:
            return _error(_UNAUDITED)
        if not decision.allowed:
            self._log.info(
                "transfer denied",
                extra={"rule": decision.rule, "number": redact_number(str(decision.number))},
            )
            spoken = decision.spoken or _SPOKEN_INVALID
            return _error(
                "Transfer refused by the dial policy; nothing was dialled. Tell the caller: "
                f'"{spoken}" Then offer another way to help, such as taking a message.'
            )
        return self._approved(decision.number, label)

    def _approved(self, destination: str, label: str) -> ToolResult:
        self._ending = True
        dialplan, context = self.settings.transfer_dialplan, self.settings.transfer_context
        if destination.startswith("+"):  # external numbers go through the rendered outbound context,
            context = self.settings.outbound_context  # so FreeSWITCH's dialplan checks them a second time
        done = False

        def transfer() -> CommandResult:
            nonlocal done
            if done:
                return CommandResult(False, "transfer already sent")
            done = True
            self._log.info("transferring", extra={"number": redact_number(destination)})
            try:
                return self.call.transfer(destination, dialplan=dialplan, context=context)
            except EslAgentError as exc:
                return CommandResult(False, str(exc))

        who = label or "the number"
        return ToolResult(
            content=(
                f"Transfer to {who} approved. Say one short sentence telling the caller you are "
                "connecting them now. The transfer starts right after you finish speaking."
            ),
            ends_call=True,
            after_speech=transfer,
        )

    def _pick_contact(self, name: str) -> Contact | ToolResult:
        matches = self.contacts.by_name(name, min_score=self.min_score, limit=5)
        if not matches:
            return _error(
                f"No contact matches {name!r}. Ask the caller to repeat or spell the name, "
                "or offer to take a message."
            )
        best, best_score = matches[0]
        close = [c for c, s in matches[1:] if best_score - s < _AMBIGUOUS_WITHIN]
        if close:
            names = ", ".join(c.name for c in [best, *close])
            return _error(f"Several contacts match {name!r}: {names}. Ask which one they mean.")
        return best

    def _lookup_contact(self, args: dict[str, Any]) -> ToolResult:
        _only(args, {"name"})
        name = _text(args, "name", _MAX_NAME)
        if not name:
            raise _BadArguments("'name' is required")
        matches = self.contacts.by_name(name, min_score=self.min_score, limit=3)
        if not matches:
            return ToolResult(f"No contact matches {name!r}.")
        lines = []
        for contact, score in matches:
            reachable = "can be transferred" if contact.transfer_target else "no transfer possible"
            notes = f" Notes: {contact.notes}" if contact.notes else ""
            lines.append(f"- {contact.name} (match {score:.0f}%, {reachable}).{notes}")
        return ToolResult("Contacts found:\n" + "\n".join(lines))

    def _hang_up(self, args: dict[str, Any]) -> ToolResult:
        _only(args, {"reason"})
        reason = _text(args, "reason", 200)
        if self._ending:
            return _error("The call is already ending; do not call more tools.")
        self._ending = True
        done = False

        def hangup() -> CommandResult:
            nonlocal done
            if done:
                return CommandResult(False, "hangup already sent")
            done = True
            self._log.info("hanging up", extra={"reason": redact_text(reason)})
            try:
                return self.call.hangup("NORMAL_CLEARING")
            except EslAgentError as exc:
                return CommandResult(False, str(exc))

        return ToolResult(
            content="Say a short goodbye now; the call ends right after that sentence.",
            ends_call=True,
            after_speech=hangup,
        )

    def _take_message(self, args: dict[str, Any]) -> ToolResult:
        _only(args, {"text"})
        text = _text(args, "text", _MAX_MESSAGE, truncate=False)
        if not text:
            raise _BadArguments("'text' is required")
        caller = self.call.caller
        contact = self.contacts.by_number(caller.number)
        record = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "call_uuid": caller.uuid,
            "caller_number": caller.number,
            "caller_name": contact.name if contact else caller.name,
            "contact_id": contact.id if contact else None,
            "message": text,
            "transcript": [
                {"role": m.role, "content": m.content}
                for m in (self.transcript() if self.transcript else ())
                if m.role in ("user", "assistant") and m.content
            ],
        }
        self.messages_path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, ensure_ascii=False) + "\n"
        fd = os.open(self.messages_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)
        self._log.info("message taken", extra={"message": redact_text(text)})
        return ToolResult("The message is saved. Tell the caller it will be passed on.")

    # ------------------------------------------------------------------------------ helpers

    def _audit(self, number: str, decision: Any, **fields: Any) -> bool:
        """Record the decision; False if the audit trail could not be written."""
        try:
            self.audit.append("agent", "transfer", number, decision, call_uuid=self.call.caller.uuid, **fields)
        except Exception:
            self._log.exception("audit append failed")
            return False
        return True


class _BadArguments(ValueError):
    pass


def _error(text: str) -> ToolResult:
    return ToolResult(content=text, is_error=True)


def _only(args: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(args) - allowed)
    if extra:
        raise _BadArguments(f"unexpected argument {extra[0][:40]!r}")


def _text(args: dict[str, Any], key: str, limit: int, truncate: bool = True) -> str:
    value = args.get(key)
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and key == "number":
        value = str(value)
    if not isinstance(value, str):
        raise _BadArguments(f"{key!r} must be a string")
    value = value.strip()
    if len(value) > limit:
        if not truncate:
            raise _BadArguments(f"{key!r} is too long")
        value = value[:limit]
    return value


def _printable(text: str) -> str:
    """A short, log-safe rendering of untrusted text for the audit trail."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)[:_MAX_NUMBER]
