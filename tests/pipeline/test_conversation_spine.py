"""The conversation through the real spine: controller, Call, fork WebSocket, FreeSWITCH simulator.

Offline parts only: scripted LLM, tone TTS, real tools and contacts. The recogniser is a stand-in
that segments the caller's audio by energy and names each utterance from a list (what a real STT
would have recognised); while the caller speaks it sends growing interims, which is what triggers
the barge-in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gevent.queue
import numpy as np
import pytest

from esl_agent import config
from esl_agent.agent.contacts import YamlContactStore
from esl_agent.agent.prompt import build_system_prompt
from esl_agent.agent.tools import AgentTools
from esl_agent.app import Controller
from esl_agent.pipeline.conversation import Conversation
from esl_agent.pipeline.greetings import GreetingCache
from esl_agent.pipeline.speech_out import PreparedAudio
from esl_agent.providers.base import Transcript
from esl_agent.providers.scripted_llm import ScriptedLanguageModel
from esl_agent.providers.tone_tts import ToneTextToSpeech
from esl_agent.sim.caller import CallerScript, speech_like
from esl_agent.sim.freeswitch import FreeSwitchSimulator

pytestmark = [pytest.mark.wire, pytest.mark.slow]  # real-time media: about 10 s per call

FRAME_RMS_SPEECH = 300.0


class EnergyStream:
    """Finals after 200 ms of silence following speech; interims every 100 ms after 300 ms of speech."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.queue: gevent.queue.Queue = gevent.queue.Queue()
        self.voiced = 0
        self.silent = 0

    def push(self, pcm: bytes) -> None:
        x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
        if x.size and float(np.sqrt(np.mean(x * x))) > FRAME_RMS_SPEECH:
            self.voiced += 1
            self.silent = 0
            if self.voiced >= 15 and self.voiced % 5 == 0 and self.texts:  # interims, a word more each time
                words = self.texts[0].split()[: 1 + (self.voiced - 15) // 5]
                self.queue.put(Transcript(" ".join(words), final=False))
            return
        self.silent += 1
        if self.silent == 10:
            if self.voiced > 10 and self.texts:
                self.queue.put(Transcript(self.texts.pop(0), final=True))
            self.voiced = 0

    def close(self) -> None:
        self.queue.put(None)

    def __iter__(self):  # type: ignore[no-untyped-def]
        while (item := self.queue.get()) is not None:
            yield item


class EnergyStt:
    name = "energy"

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts

    def open_stream(self, *, sample_rate: int, language: str) -> EnergyStream:
        return EnergyStream(self.texts)


@dataclass(frozen=True)
class _Decision:
    allowed: bool
    number: str
    rule: str = "allow:test"
    spoken: str = ""


class AllowAll:
    def check(self, number: str, *, caller: str | None = None, direction: Any = "out") -> _Decision:
        return _Decision(True, number)


class NoAudit:
    def append(self, *args: Any, **fields: Any) -> None:
        return None


@pytest.mark.parametrize("fork_mode", ["stream", "play_audio"])
def test_multi_turn_call_with_barge_in_and_transfer(tmp_path: Path, fork_mode: str) -> None:
    contacts_file = tmp_path / "contacts.yaml"
    contacts_file.write_text('contacts:\n  - name: Anna Berger\n    numbers: ["0676 765 43 21"]\n')
    settings = config.from_mapping({
        "server": {"esl_listen": "127.0.0.1:0", "fork_listen": "127.0.0.1:0", "http_listen": "127.0.0.1:0"},
        "fork": {"mode": fork_mode},
        "tts": {"provider": "tone"},
        "greetings": {"cache_dir": str(tmp_path / "greetings")},
        "contacts": {"path": str(contacts_file)},
        "calls": {"audio_dir": str(tmp_path / "audio")},
        "pipeline": {"end_of_turn_ms": 100, "false_interruption_ms": 2000},
    })
    tts = ToneTextToSpeech(ms_per_char=30)
    contacts = YamlContactStore(contacts_file)
    greetings = GreetingCache(settings.greetings, tts, contacts)
    texts = ["Max Mustermann", "wait what are your opening hours", "please connect me to Anna Berger"]
    conversations: list[Conversation] = []

    def conversation(call: Any) -> Conversation:
        tools = AgentTools(call, contacts, AllowAll(), NoAudit(), settings.agent,
                           messages_path=tmp_path / "messages.jsonl")
        conv = Conversation(
            call, EnergyStt(texts), ScriptedLanguageModel(), tts, tools, greetings,
            lambda contact: build_system_prompt(settings.agent, contact), settings.pipeline,
            sample_rate=8000, contacts=contacts, prepared=PreparedAudio(),
        )
        conversations.append(conv)
        return conv

    controller = Controller(settings, conversation, with_ops_server=False)
    controller.start()
    sim = FreeSwitchSimulator(("127.0.0.1", controller.esl_port), fork_mode=fork_mode, tmp_dir=str(tmp_path))
    script = (
        CallerScript()
        .say(speech_like(700), after_agent_silence_ms=400)
        .say(speech_like(1200), barge_in_ms=500)
        .say(speech_like(900), after_agent_silence_ms=400)
    )
    try:
        call = sim.place_call(caller_number="+4312345678", script=script)
        assert call.wait(timeout=60)
    finally:
        sim.shutdown()
        controller.shutdown(0)
        greetings.stop()

    events = call.timeline
    breaks = [e["t"] for e in events if e.get("kind") == "break" and e.get("reason") == "killAudio"]
    transfers = [e for e in events if e.get("kind") == "transfer"]
    assert breaks, "the barge-in must stop the agent's audio"
    assert [t["destination"] for t in transfers] == ["+436767654321"]
    assert transfers[0]["t"] > breaks[-1]

    said = [m for m in conversations[0].history.messages() if m.role == "assistant"]
    texts_said = [m.content for m in said]
    assert texts_said[0] == settings.greetings.generic_text
    # interrupted: cut to what was heard (how much depends on when the barge-in landed)
    full = "Thank you, Max Mustermann. How can I help you today?"
    heard = texts_said[1]
    assert heard.endswith("…") and heard.startswith("Thank you")
    assert full.startswith(heard.rstrip("…").rstrip()) and len(heard.rstrip("…")) < len(full)
    assert any(m.tool_calls and m.tool_calls[0].name == "transfer_call" for m in said)
    assert texts_said[-1] == "You are being transferred now. Please hold."
    assert json.dumps([e for e in events if e.get("kind") == "state"], default=str).count("speaking") >= 3
