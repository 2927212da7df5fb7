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
from esl_agent.config import Settings, parse_hostport, secret
from esl_agent.control.call import Call, CallHandler
from esl_agent.control.originate import Originator
from esl_agent.media import wavfile
from esl_agent.ops.call_records import CallRecords
from esl_agent.ops.cost import Rates
from esl_agent.pipeline.conversation import Conversation
from esl_agent.pipeline.greetings import GreetingCache
from esl_agent.pipeline.speech_out import SHARED_PREPARED
from esl_agent.policy.api import handle_outbound
from esl_agent.policy.audit import AuditLog, TokenChecker
from esl_agent.policy.dialing import DialPolicy
from esl_agent.policy.limits import OutboundLimits
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
        s = self.settings
        tools = AgentTools(call, self.contacts, self.policy, self.audit, s.agent,
                           messages_path=str(Path(s.calls.audio_dir).parent / "messages.jsonl"))
        conversation = Conversation(
            call, self.stt, self.llm, self.tts, tools, self.greetings,
            lambda contact: build_system_prompt(s.agent, contact, greeting=self.greetings.text_for(contact)),
            s.pipeline, contacts=self.contacts, sample_rate=s.fork.sample_rate, language=s.stt.language,
            apology_text=s.calls.apology_text, apology_file=self.apology_file,
            human_contact=s.pipeline.dtmf_transfer_contact, llm_turn_timeout=s.llm.turn_timeout,
        )
        tools.transcript = lambda: conversation.history.messages()
        return conversation

    def dial_guard(self, number: str, caller: str) -> tuple[bool, str]:
        decision = self.policy.check(number, caller=caller, direction="out")
        return decision.allowed, decision.rule

    def controller_options(self) -> dict:
        """Keyword arguments for `Controller`: apology, dial guard, call records, outbound API."""
        records = CallRecords(self.settings.ops.call_records,
                              Rates.from_policy(self.policy, self.settings.ops.cost_per_minute))
        return {"apology_file": self.apology_file, "dial_guard": self.dial_guard, "on_call_end": records.record,
                "outbound": self.outbound_api()}

    def outbound_api(self):
        """POST /outbound handler (token, policy, limits, audit, originate), or None when not configured."""
        p = self.settings.policy
        if not p.tokens_env:
            return None
        checker = TokenChecker.from_env(p.tokens_env)
        limits = OutboundLimits.from_policy(self.policy)
        originator = None
        if p.esl_password_env:
            host, port = parse_hostport(p.esl_inbound, self.settings.source, "policy.esl_inbound")
            originator = Originator(host, port, secret(p.esl_password_env), self.settings.server.esl_listen,
                                    caller_id=p.caller_id)

        def handle(body: bytes, authorization: str | None, peer: str) -> tuple[int, dict]:
            return handle_outbound(body, authorization, policy=self.policy, audit=self.audit, checker=checker,
                                   limits=limits, start=originator.originate if originator else None, peer=peer)

        return handle


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
    # The filler and the apology are synthesised once per process now, not in a caller's first turn.
    for text in (settings.pipeline.filler_text, settings.calls.apology_text):
        if text:
            SHARED_PREPARED.get(tts, text, settings.fork.sample_rate, settings.stt.language)
    return Agent(settings, stt, llm, tts, contacts, greetings, policy, audit, apology)


def render_prepared(tts: TextToSpeech, text: str, path: Path, sample_rate: int) -> str | None:
    """Synthesise a prepared sentence to an 8 kHz WAV once; None if TTS is unavailable."""
    try:
        pcm = b"".join(tts.synthesize(text, NoTurn()))
    except Exception as exc:
        log.warning("could not render %s: %s", path.name, exc)
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    wavfile.write_wav(path, pcm, sample_rate)
    return str(path.resolve())
