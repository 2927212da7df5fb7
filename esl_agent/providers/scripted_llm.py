"""Offline scripted "language model": YAML intents -> reply text and/or tool calls.

The last link of every failover chain and the default for demos and tests. An intent matches the
last user message by keywords (whole words) or a regex whose named groups become slots; its reply
template and tool arguments are filled from the slots and `{caller_name}`. After a tool result it
speaks a short confirmation built from the result. Replies stream word by word.

Script format (the embedded `DEFAULT_SCRIPT` is a complete example)::

    greeting: "Hello ... May I have your name, please?"    # no user message yet
    fallback: "..."                                         # nothing matched
    caller_name_patterns: ['(?im)^caller name:\\s*(?P<name>.+)$']   # searched in system messages
    intents:
      - name: transfer
        regex: ['...(?P<name>...)']          # and/or keywords: [word, "two words"]
        reply: "Connecting you to {name}."
        reply_if_name_unknown: "..."         # optional: used while the caller's name is unknown
        remember_name: true                  # optional: the `name` slot is the caller's name
        tool: transfer_call
        arguments: {name: "{name}"}
    after_tool:                              # {result} = the tool's text; JSON keys are slots too
      transfer_call: "Please hold."
      default: "Done."
    tool_error: "Sorry, that did not work: {error}."
    name_received: "Thank you, {name}."      # a short answer right after we asked for the name
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from esl_agent.errors import ConfigError
from esl_agent.providers.base import (
    LlmEvent,
    Message,
    TextDelta,
    ToolCall,
    ToolSpec,
    TurnToken,
    Usage,
)

DEFAULT_SCRIPT = r"""
greeting: "Hello, you have reached the front desk. May I have your name, please?"
fallback: >-
  I'm sorry, I can connect you to a colleague, look up a contact or tell you our
  opening hours. What would you like?
caller_name_patterns:
  - '(?im)^\s*caller(?:''s)? name:\s*(?P<name>[^\n]+?)\s*$'
intents:
  - name: goodbye
    keywords: [bye, goodbye, "good bye", "that's all", "that is all", "nothing else"]
    reply: "Thank you for calling. Goodbye!"
    tool: hang_up
    arguments: {}
  - name: transfer
    regex:
      - '\b(?:transfer|connect|put)\s+me\s+(?:through\s+)?to\s+(?P<name>.+)'
      - '\b(?:speak|talk)\s+(?:to|with)\s+(?P<name>.+)'
    reply: "Certainly, one moment while I connect you to {name}."
    tool: transfer_call
    arguments: {name: "{name}"}
  - name: lookup
    regex:
      - '\bwho\s+is\s+(?P<name>.+)'
      - '\blook\s+up\s+(?P<name>.+)'
    reply: "Let me check that for you."
    tool: lookup_contact
    arguments: {name: "{name}"}
  - name: hours
    keywords: [hours, "opening", "open", "close", "closing"]
    reply: "We are open Monday to Friday from nine in the morning to five in the afternoon."
  - name: introduce
    regex:
      - '\b(?:my\s+name\s+is|this\s+is|call\s+me)\s+(?P<name>[a-z][a-z''-]*(?:\s+[a-z][a-z''-]*)?)'
      - '^\W*(?P<name>[a-z][a-z''-]*(?:\s+[a-z][a-z''-]*)?)\s+(?:speaking|here)\b'
    reply: "Nice to meet you, {name}. How can I help you today?"
    remember_name: true
  - name: greet
    keywords: [hello, hi, hey, "good morning", "good afternoon", "good evening"]
    reply: "Hello {caller_name}, how can I help you today?"
    reply_if_name_unknown: "Hello! May I have your name, please?"
after_tool:
  transfer_call: "You are being transferred now. Please hold."
  lookup_contact: "{result}"
  hang_up: ""
  default: "Done."
tool_error: "Sorry, that did not work: {error}."
name_received: "Thank you, {name}. How can I help you today?"
"""

# Words that trail a spoken name and are not part of it ("... Anna Berger please").
_TRAILING = re.compile(r"(?:[\s,]+(?:please|thanks|thank you|now|for me|right away))+\s*$", re.I)


@dataclass(frozen=True)
class Intent:
    """One scripted intent."""

    name: str
    keywords: tuple[str, ...]
    patterns: tuple[re.Pattern[str], ...]
    reply: str
    reply_if_name_unknown: str = ""
    tool: str = ""
    arguments: Mapping[str, Any] | None = None
    remember_name: bool = False

    def match(self, text: str) -> dict[str, str] | None:
        """Slots if this intent matches `text`, else None."""
        for pattern in self.patterns:
            m = pattern.search(text)
            if m:
                return {k: _clean_slot(v) for k, v in m.groupdict().items() if v}
        lowered = text.lower()
        for kw in self.keywords:
            if re.search(r"(?<![\w'])" + re.escape(kw.lower()) + r"(?![\w'])", lowered):
                return {}
        return None


@dataclass(frozen=True)
class Script:
    """A parsed intent script."""

    greeting: str
    fallback: str
    intents: tuple[Intent, ...]
    after_tool: Mapping[str, str]
    tool_error: str
    name_received: str
    caller_name_patterns: tuple[re.Pattern[str], ...]


def parse_script(text: str, source: str = "<script>") -> Script:
    """Parse and check a YAML intent script; raise ConfigError naming the problem."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the script must be a mapping")
    intents = []
    for i, raw in enumerate(data.get("intents") or []):
        if not isinstance(raw, dict) or "name" not in raw:
            raise ConfigError(f"{source}: intents[{i}]: needs a name")
        regexes = raw.get("regex") or []
        if isinstance(regexes, str):
            regexes = [regexes]
        try:
            patterns = tuple(re.compile(r, re.I) for r in regexes)
        except re.error as exc:
            raise ConfigError(f"{source}: intents[{i}].regex: {exc}") from None
        keywords = tuple(str(k) for k in raw.get("keywords") or [])
        if not patterns and not keywords:
            raise ConfigError(f"{source}: intents[{i}] ({raw['name']}): needs keywords or regex")
        intents.append(Intent(
            name=str(raw["name"]), keywords=keywords, patterns=patterns,
            reply=str(raw.get("reply") or ""),
            reply_if_name_unknown=str(raw.get("reply_if_name_unknown") or ""),
            tool=str(raw.get("tool") or ""), arguments=raw.get("arguments") or {},
            remember_name=bool(raw.get("remember_name", False)),
        ))
    try:
        name_patterns = tuple(re.compile(p) for p in data.get("caller_name_patterns") or [])
    except re.error as exc:
        raise ConfigError(f"{source}: caller_name_patterns: {exc}") from None
    return Script(
        greeting=str(data.get("greeting") or "Hello, how can I help you?"),
        fallback=str(data.get("fallback") or "Sorry, I did not understand that."),
        intents=tuple(intents),
        after_tool={str(k): str(v or "") for k, v in (data.get("after_tool") or {}).items()},
        tool_error=str(data.get("tool_error") or "Sorry, that did not work."),
        name_received=str(data.get("name_received") or "Thank you, {name}. How can I help?"),
        caller_name_patterns=name_patterns,
    )


def load_script(path: str) -> Script:
    """Load a script file, or the embedded default when `path` is empty."""
    if not path:
        return parse_script(DEFAULT_SCRIPT, "<embedded default script>")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read LLM script: {exc.strerror or exc}") from None
    return parse_script(text, path)


class ScriptedLanguageModel:
    """A deterministic receptionist policy behind the LanguageModel interface."""

    def __init__(self, script: Script | None = None) -> None:
        self.name = "scripted"
        self.script = script or parse_script(DEFAULT_SCRIPT, "<embedded default script>")
        self._call_ids = itertools.count(1)

    def stream(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec], turn: TurnToken
    ) -> Iterator[LlmEvent]:
        """Stream the scripted reply word by word, then its tool call(s) and a Usage."""
        text, calls = self.decide(messages, tools)
        words = 0
        for i, word in enumerate(text.split()):
            if turn.cancelled:
                return
            words += 1
            yield TextDelta(word if i == 0 else " " + word)
        if turn.cancelled:
            return
        yield from calls
        prompt_words = sum(len(m.content.split()) for m in messages)
        yield Usage(input_tokens=prompt_words, output_tokens=words, provider=self.name)

    def decide(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec]
    ) -> tuple[str, list[ToolCall]]:
        """The reply text and tool calls for this conversation (no streaming)."""
        offered = {t.name for t in tools}
        caller = self._caller_name(messages)
        slots_base = {"caller_name": caller or ""}
        last = messages[-1] if messages else None
        if last is not None and last.role == "tool":
            return self._after_tool(messages, last, slots_base), []
        user = next((m for m in reversed(messages) if m.role == "user"), None)
        if user is None or not user.content.strip():
            return _fill(self.script.greeting, slots_base), []
        for intent in self.script.intents:
            slots = intent.match(user.content)
            if slots is None:
                continue
            slots = {**slots_base, **slots}
            template = intent.reply
            if intent.reply_if_name_unknown and not caller:
                template = intent.reply_if_name_unknown
            calls = []
            if intent.tool and intent.tool in offered:
                args = {k: _fill(v, slots) if isinstance(v, str) else v
                        for k, v in (intent.arguments or {}).items()}
                calls.append(ToolCall(id=f"scripted_{next(self._call_ids)}", name=intent.tool,
                                      arguments=args))
            return _fill(template, slots), calls
        name = _answered_name(messages, user)
        if name:
            return _fill(self.script.name_received, {**slots_base, "name": name}), []
        return _fill(self.script.fallback, slots_base), []

    def _caller_name(self, messages: Sequence[Message]) -> str:
        for m in messages:
            if m.role != "system":
                continue
            for pattern in self.script.caller_name_patterns:
                found = pattern.search(m.content)
                if found and found.groupdict().get("name"):
                    return _clean_slot(found.group("name"))
        name = ""
        naming = [i for i in self.script.intents if i.remember_name]
        for m in messages:
            if m.role != "user":
                continue
            for intent in naming:
                slots = intent.match(m.content)
                if slots and slots.get("name"):
                    name = slots["name"]
            name = _answered_name(messages[: messages.index(m) + 1], m) or name
        return name

    def _after_tool(self, messages: Sequence[Message], result: Message, base: dict[str, str]) -> str:
        tool_name = ""
        for m in reversed(messages):
            for call in m.tool_calls:
                if call.id == result.tool_call_id:
                    tool_name = call.name
                    break
            if tool_name:
                break
        slots = dict(base)
        slots["result"] = result.content.strip()
        try:
            parsed = json.loads(result.content)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            slots.update({k: str(v) for k, v in parsed.items()})
            slots["result"] = str(parsed.get("summary") or parsed.get("message") or ", ".join(
                f"{k} {v}" for k, v in parsed.items()))
            if parsed.get("error") or parsed.get("ok") is False:
                slots.setdefault("error", "")
                return _fill(self.script.tool_error, slots)
        templates = self.script.after_tool
        return _fill(templates.get(tool_name, templates.get("default", "")), slots)


def _answered_name(messages: Sequence[Message], user: Message) -> str:
    """A short reply right after we asked for the caller's name is the name ("Anna Berger")."""
    words = user.content.strip(" .!?").split()
    if not 1 <= len(words) <= 3 or not all(w.replace("-", "").replace("'", "").isalpha()
                                           for w in words):
        return ""
    position = max(i for i, m in enumerate(messages) if m is user)
    asked = next((m for m in reversed(messages[:position]) if m.role == "assistant"), None)
    if asked is None or "your name" not in asked.content.lower():
        return ""
    return _clean_slot(" ".join(words))


def _clean_slot(value: str) -> str:
    value = value.strip().strip(".,!?;:\"'").strip()
    value = _TRAILING.sub("", value).strip(" .,!?;:")
    return " ".join(w[:1].upper() + w[1:] if w.islower() else w for w in value.split())


class _Slots(dict):
    def __missing__(self, key: str) -> str:
        return ""


def _fill(template: str, slots: Mapping[str, str]) -> str:
    text = template.format_map(_Slots(slots))
    return re.sub(r"\s+([,.!?])", r"\1", re.sub(r"\s{2,}", " ", text)).strip()
