"""The registry builds configured providers and explains missing extras and secrets."""

from __future__ import annotations

import sys

import pytest

from esl_agent.config import (
    GoogleSttSettings,
    GoogleTtsSettings,
    HttpLlmSettings,
    LlmSettings,
    ScriptedLlmSettings,
    SttSettings,
    TtsSettings,
)
from esl_agent.errors import ConfigError
from esl_agent.providers import registry
from esl_agent.providers.base import (
    LanguageModel,
    Message,
    NoTurn,
    SpeechToText,
    TextDelta,
    TextToSpeech,
    Usage,
)


def test_build_llm_chain_in_order():
    settings = LlmSettings(chain=["openai", "anthropic", "scripted"], first_token_timeout=0.7,
                           anthropic=HttpLlmSettings(model="c", api_key_env="TEST_ANT_KEY"))
    llm = registry.build_llm(settings, env={"TEST_ANT_KEY": "secret"})
    assert isinstance(llm, LanguageModel)
    assert [p.name for p in llm.chain] == ["openai", "anthropic", "scripted"]
    assert llm.first_token_timeout == 0.7
    assert llm.chain[1].client.api_key == "secret"


def test_default_chain_is_scripted_and_answers():
    llm = registry.build_llm(LlmSettings(), env={})
    events = list(llm.stream([], [], NoTurn()))
    assert isinstance(events[-1], Usage) and events[-1].provider == "scripted"


def test_missing_secret_is_a_config_error():
    settings = LlmSettings(chain=["groq"])
    with pytest.raises(ConfigError, match="GROQ_API_KEY"):
        registry.build_llm(settings, env={})


def test_missing_optional_package_names_the_extra(monkeypatch):
    monkeypatch.delitem(sys.modules, "esl_agent.providers.groq_llm", raising=False)
    monkeypatch.setitem(sys.modules, "groq", None)
    with pytest.raises(ConfigError, match=r"groq.*esl-agent\[groq\]"):
        registry.build_llm(LlmSettings(chain=["groq"]), env={"GROQ_API_KEY": "k"})


def test_build_tts_tone():
    tts = registry.build_tts(TtsSettings(provider="tone"), sample_rate=8000)
    assert isinstance(tts, TextToSpeech) and tts.sample_rate == 8000
    assert len(b"".join(tts.synthesize("hello", NoTurn()))) == 5 * 60 * 8 * 2


def test_build_stt_offline_and_google():
    stt = registry.build_stt(SttSettings(provider="offline"))
    assert isinstance(stt, SpeechToText) and stt.name == "offline"
    google = registry.build_stt(SttSettings(
        provider="google", google=GoogleSttSettings(endpoint="127.0.0.1:9", insecure=True)))
    assert isinstance(google, SpeechToText) and google.name == "google"


def test_build_tts_offline_and_google():
    offline = registry.build_tts(TtsSettings(provider="offline"), sample_rate=16000)
    assert offline.sample_rate == 16000 and offline.voice == "en_US-joe-medium"
    google = registry.build_tts(TtsSettings(
        provider="google", google=GoogleTtsSettings(endpoint="127.0.0.1:9", insecure=True)))
    assert isinstance(google, TextToSpeech) and google.voice == "en-US-Chirp3-HD-Kore"


def test_scripted_llm_loads_a_script_file(tmp_path):
    script = tmp_path / "intents.yaml"
    script.write_text("intents:\n  - name: ping\n    keywords: [ping]\n    reply: pong\n")
    llm = registry.build_llm(LlmSettings(scripted=ScriptedLlmSettings(script=str(script))), env={})
    events = list(llm.stream([Message("user", "ping")], [], NoTurn()))
    assert events[0] == TextDelta("pong")
    with pytest.raises(ConfigError, match="cannot read LLM script"):
        registry.build_llm(LlmSettings(scripted=ScriptedLlmSettings(script=str(tmp_path / "no"))))
