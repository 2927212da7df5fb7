"""Builds the process-wide parts from the settings and the per-call conversation factory.

Process-wide (built once): providers, contacts store, greeting cache and its warmer, dial policy,
audit log, prepared audio (apology, filler). Per call: tools bound to the call, and the
`Conversation` that runs it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from esl_agent.agent.contacts import ContactStore, open_store
from esl_agent.agent.prompt import build_system_prompt
from esl_agent.agent.tools import AgentTools
from esl_agent.config import Settings
from esl_agent.control.call import Call, CallHandler
from esl_agent.media import wavfile
from esl_agent.pipeline.conversation import Conversation
from esl_agent.pipeline.greetings import GreetingCache
from esl_agent.policy.audit import AuditLog
from esl_agent.policy.dialing import DialPolicy
from esl_agent.providers import registry
from esl_agent.providers.base import LanguageModel, NoTurn, SpeechToText, TextToSpeech

log = logging.getLogger("esl_agent.assembly")


@dataclass
class Agent:
    """Everything calls share."""

    settings: Settings
    stt: SpeechToText
    llm: LanguageModel
    tts: TextToSpeech
    contacts: ContactStore
    greetings: GreetingCache
    policy: DialPolicy
    audit: AuditLog
    apology_file: str | None

    def conversation(self, call: Call) -> CallHandler:
        """The handler factory the controller calls for every call."""
        tools = AgentTools(call, self.contacts, self.policy, self.audit, self.settings.agent)
        return Conversation(
            call, self.stt, self.llm, self.tts, tools, self.greetings,
            lambda contact: build_system_prompt(self.settings.agent, contact),
            self.settings.pipeline, contacts=self.contacts, sample_rate=self.settings.fork.sample_rate,
            language=self.settings.stt.language,
        )

    def dial_guard(self, number: str, caller: str) -> tuple[bool, str]:
        decision = self.policy.check(number, caller=caller, direction="out")
        return decision.allowed, decision.rule


def build_agent(settings: Settings, *, start_warmer: bool = True) -> Agent:
    """Build the shared parts; renders the apology once and warms greetings in the background."""
    stt = registry.build_stt(settings.stt)
    llm = registry.build_llm(settings.llm)
    tts = registry.build_tts(settings.tts, sample_rate=settings.fork.sample_rate)
    contacts = open_store(settings.contacts)
    greetings = GreetingCache(settings.greetings, tts, contacts,
                              config_path=settings.source if settings.source != "<defaults>" else None,
                              language=settings.agent.language)
    policy = DialPolicy.from_file(settings.policy.path)
    audit = AuditLog(settings.policy.audit_log)
    apology = render_prepared(tts, settings.calls.apology_text, Path(settings.calls.audio_dir) / "apology.wav",
                              settings.fork.sample_rate)
    if start_warmer:
        greetings.start_warmer()  # warm_on_start decides only the first warm inside it
    return Agent(settings, stt, llm, tts, contacts, greetings, policy, audit, apology)


def render_prepared(tts: TextToSpeech, text: str, path: Path, sample_rate: int) -> str | None:
    """Synthesise a prepared sentence to an 8 kHz WAV once; None if TTS is unavailable."""
    try:
        pcm = b"".join(tts.synthesize(text, NoTurn()))
    except Exception as exc:  # noqa: BLE001 - the controller still runs; the fallback skips the apology
        log.warning("could not render %s: %s", path.name, exc)
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    wavfile.write_wav(path, pcm, sample_rate)
    return str(path.resolve())
