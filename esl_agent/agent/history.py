"""Conversation history for the LLM, cut to what the caller actually heard.

A reply is recorded as it is spoken (`ReplyRecord`): the sentences with the duration of their
audio, grouped in rounds separated by tool calls and their results. When the caller interrupts,
`cut(heard_ms)` keeps the sentences heard in full and the words reached in the sentence that was
playing; the rest never happened as far as the model is concerned. Tool calls and results stay.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from esl_agent.providers.base import Message, ToolCall

CUT_MARK = "…"  # appended to a reply the caller cut short, so the model knows it was interrupted


@dataclass(eq=False)  # compared and hashed by identity: two equal sentences are two utterances
class SpokenSentence:
    """One piece of a reply as it was sent to the caller; `duration_ms` grows with its audio."""

    text: str
    duration_ms: float = 0.0
    in_history: bool = True  # False for a filler: it takes playback time but is not shown to the LLM


def locate(sentences: Sequence[SpokenSentence], position_ms: float) -> tuple[int, float] | None:
    """The sentence playing at `position_ms` of the reply and how far into it, or None past the end."""
    start = 0.0
    for index, sentence in enumerate(sentences):
        end = start + sentence.duration_ms
        if position_ms < end:
            return index, max(0.0, position_ms - start)
        start = end
    return None


def heard_part(sentence: SpokenSentence, heard_ms_in_sentence: float) -> str:
    """The words of `sentence` reached after `heard_ms_in_sentence` (a word counts once finished)."""
    if sentence.duration_ms <= 0 or heard_ms_in_sentence <= 0:
        return ""
    if heard_ms_in_sentence >= sentence.duration_ms:
        return sentence.text
    reached = len(sentence.text) * heard_ms_in_sentence / sentence.duration_ms
    kept: list[str] = []
    position = 0
    for word in sentence.text.split():
        end = sentence.text.index(word, position) + len(word)
        if end > reached:
            break
        kept.append(word)
        position = end
    return " ".join(kept)


@dataclass
class _Round:
    sentences: list[SpokenSentence] = field(default_factory=list)
    tool_calls: tuple[ToolCall, ...] = ()
    results: list[tuple[str, str]] = field(default_factory=list)  # (tool_call_id, content)


class ReplyRecord:
    """One assistant reply in the making: spoken sentences and tool rounds, cut once if interrupted."""

    def __init__(self) -> None:
        self._rounds: list[_Round] = [_Round()]
        self.heard_ms: float | None = None  # None: heard in full

    def say(self, text: str, in_history: bool = True) -> SpokenSentence:
        """Record a sentence about to be spoken; the caller updates its duration as audio goes out."""
        sentence = SpokenSentence(text, 0.0, in_history)
        self._rounds[-1].sentences.append(sentence)
        return sentence

    def unsay(self, sentence: SpokenSentence) -> None:
        """Forget a sentence that was queued but will never be spoken (its audio failed)."""
        for rnd in self._rounds:
            if sentence in rnd.sentences:
                rnd.sentences.remove(sentence)
                return

    @property
    def sentences(self) -> list[SpokenSentence]:
        """Every spoken piece in playback order (fillers included)."""
        return [s for r in self._rounds for s in r.sentences]

    @property
    def spoken_ms(self) -> float:
        return sum(s.duration_ms for s in self.sentences)

    def add_tool_calls(self, calls: Sequence[ToolCall]) -> None:
        """The model called tools after the sentences of the current round."""
        self._rounds[-1].tool_calls = tuple(calls)

    def add_tool_result(self, tool_call_id: str, content: str) -> None:
        """A tool's answer; the next sentences belong to a new round."""
        current = self._rounds[-1]
        current.results.append((tool_call_id, content))
        if len(current.results) >= len(current.tool_calls):
            self._rounds.append(_Round())

    def cut(self, heard_ms: float) -> None:
        """The caller interrupted after hearing `heard_ms` of this reply's audio."""
        self.heard_ms = max(0.0, heard_ms)

    def text(self) -> str:
        """All the text the model will see as said (after the cut)."""
        return " ".join(m.content for m in self.messages() if m.role == "assistant" and m.content)

    def messages(self) -> list[Message]:
        heard = self._heard_texts()
        out: list[Message] = []
        cut_short = self.heard_ms is not None and any(
            s.in_history and text != s.text for s, text in heard.items()
        )
        for index, rnd in enumerate(self._rounds):
            content = " ".join(t for s in rnd.sentences if s.in_history and (t := heard[s]))
            last = index == len(self._rounds) - 1 or not any(
                r.sentences or r.tool_calls for r in self._rounds[index + 1:]
            )
            if cut_short and last and content:
                content += CUT_MARK
            if rnd.tool_calls:
                answered = {call_id for call_id, _ in rnd.results}
                calls = tuple(c for c in rnd.tool_calls if c.id in answered)
                if calls:
                    out.append(Message("assistant", content, tool_calls=calls))
                    out.extend(Message("tool", text, tool_call_id=call_id) for call_id, text in rnd.results)
                    continue
            if content:
                out.append(Message("assistant", content))
        return out

    def _heard_texts(self) -> dict[SpokenSentence, str]:
        result: dict[SpokenSentence, str] = {}
        start = 0.0
        for sentence in self.sentences:
            if self.heard_ms is None:
                result[sentence] = sentence.text
            else:
                result[sentence] = heard_part(sentence, self.heard_ms - start)
            start += sentence.duration_ms
        return result


class ConversationHistory:
    """The messages sent to the LLM: system prompt, caller turns, replies as heard; bounded."""

    def __init__(self, system_prompt: str, max_messages: int = 40) -> None:
        self.system_prompt = system_prompt
        self.max_messages = max(2, max_messages)
        self._entries: list[Message | ReplyRecord] = []

    def add_user(self, text: str) -> None:
        """What the caller said (or did: "The caller pressed 5")."""
        self._append(Message("user", text))

    def add_assistant(self, text: str) -> None:
        """Something the agent said in full outside a reply (a greeting played from a file)."""
        self._append(Message("assistant", text))

    def begin_reply(self) -> ReplyRecord:
        """Start recording a reply; it shows in messages() as far as it was heard."""
        record = ReplyRecord()
        self._append(record)
        return record

    def messages(self) -> list[Message]:
        """System prompt plus the bounded tail of the conversation, starting at a caller turn."""
        body: list[Message] = []
        for entry in self._entries:
            rendered = entry.messages() if isinstance(entry, ReplyRecord) else [entry]
            for message in rendered:
                if body and message.role == "user" and body[-1].role == "user":
                    body[-1] = Message("user", f"{body[-1].content} {message.content}")
                elif body and message.role == "assistant" and not message.tool_calls and \
                        body[-1].role == "assistant" and not body[-1].tool_calls:
                    body[-1] = Message("assistant", f"{body[-1].content} {message.content}")
                else:
                    body.append(message)
        limit = self.max_messages - 1
        if len(body) > limit:
            body = body[-limit:]
            while body and body[0].role != "user":
                body.pop(0)
        return [Message("system", self.system_prompt), *body]

    def _append(self, entry: Message | ReplyRecord) -> None:
        self._entries.append(entry)
        # Entries render to at least zero messages; keep a generous multiple of the bound.
        overflow = len(self._entries) - 2 * self.max_messages
        if overflow > 0:
            del self._entries[:overflow]
