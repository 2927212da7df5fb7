"""A whole conversation with the real scripted LLM, tools, contacts, prompt and greeting cache.

Only the call, STT and TTS are fakes: the caller's words go in as transcripts, and the test
asserts on the audio the caller got, the history the model saw and the transfer FreeSWITCH got.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from esl_agent.agent.contacts import YamlContactStore
from esl_agent.agent.prompt import build_system_prompt
from esl_agent.agent.tools import AgentTools
from esl_agent.config import AgentSettings, GreetingSettings, PipelineSettings
from esl_agent.pipeline.conversation import Conversation
from esl_agent.pipeline.greetings import GreetingCache
from esl_agent.pipeline.speech_out import PreparedAudio
from esl_agent.providers.failover import FailoverLanguageModel
from esl_agent.providers.scripted_llm import ScriptedLanguageModel
from tests.pipeline.fakes import FakeCall, FakeStt, FakeTts, tone, wait_until

CONTACTS = """
contacts:
  - name: Anna Berger
    numbers: ["0676 765 43 21"]
"""


@dataclass(frozen=True)
class _Allowed:
    allowed: bool
    number: str
    rule: str = "allow:test"
    spoken: str = ""


class AllowAll:
    def check(self, number: str, *, caller: str | None = None, direction: Any = "out") -> _Allowed:
        digits = "".join(c for c in number if c.isdigit())
        return _Allowed(True, "+43" + digits[1:] if digits.startswith("0") else "+" + digits)


class Audit:
    def __init__(self) -> None:
        self.entries: list[tuple[str, str]] = []

    def append(self, actor: str, action: str, number: str, decision: Any, **fields: Any) -> None:
        self.entries.append((action, number))


def test_greeting_name_and_transfer_with_the_real_agent(tmp_path: Path) -> None:
    contacts_file = tmp_path / "contacts.yaml"
    contacts_file.write_text(CONTACTS, encoding="utf-8")
    contacts = YamlContactStore(contacts_file)
    call, stt, tts = FakeCall(number="+4312345678"), FakeStt(), FakeTts()
    agent = AgentSettings()
    tools = AgentTools(call, contacts, AllowAll(), Audit(), agent, messages_path=tmp_path / "m.jsonl")
    greetings = GreetingCache(GreetingSettings(cache_dir=str(tmp_path / "greetings")), tts, contacts)
    llm = FailoverLanguageModel([ScriptedLanguageModel()], first_token_timeout=2.0)
    conv = Conversation(
        call, stt, llm, tts, tools, greetings,
        lambda contact: build_system_prompt(agent, contact, greeting=greetings.text_for(contact)),
        PipelineSettings(end_of_turn_ms=1, end_of_turn_digits_ms=1, filler_after_ms=60_000),
        8000, contacts=contacts, prepared=PreparedAudio(),
    )
    try:
        conv.start()
        hear(call, tts, conv, "Hello, you have reached the front desk.", "May I have your name, please?")

        stt.say("Max Mustermann")
        hear(call, tts, conv, "Thank you, Max Mustermann.", "How can I help you today?")

        stt.say("please connect me to Anna Berger")
        hear(call, tts, conv, "Certainly, one moment while I connect you to Anna Berger.",
             "You are being transferred now.", "Please hold.", listen=False)
        assert call.transfers == []  # not before the caller heard the confirmation
        call.play_all()
        wait_until(lambda: call.transfers == ["+436767654321"])

        said = [m.content for m in conv.history.messages() if m.role == "assistant"]
        assert said[0] == GreetingSettings().generic_text
        assert any("Anna Berger" in text for text in said)
        assert conv.usage.tokens_out > 0 and conv.usage.tts_chars > 0
    finally:
        conv.close()
        greetings.stop()


def hear(call: FakeCall, tts: FakeTts, conv: Conversation, *sentences: str, listen: bool = True) -> None:
    """Wait until the newest turn sent exactly these sentences' audio; then let the caller hear it."""
    expected = b"".join(tone(s) for s in sentences)
    wait_until(lambda: conv.timings and call.audio_of_turn(conv.timings[-1].turn) == expected, what=sentences[0])
    assert [t for t in tts.texts() if t in sentences] == list(sentences)
    if listen:
        call.play_all()
        wait_until(lambda: call.state_names()[-1] == "listening")
