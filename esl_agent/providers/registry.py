"""Build the configured providers from settings: the only place that reads secrets for them.

Provider modules are imported lazily, so only the extras a config uses must be installed; a
missing optional package raises ConfigError naming the provider and the pip extra to install.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from types import ModuleType

from esl_agent.config import LlmSettings, SttSettings, TtsSettings, secret
from esl_agent.errors import ConfigError
from esl_agent.providers.base import LanguageModel, SpeechToText, TextToSpeech

# provider -> (module, pip extra)
_MODULES: dict[str, tuple[str, str]] = {
    "google-stt": ("esl_agent.providers.google_stt", "google"),
    "offline-stt": ("esl_agent.providers.offline_stt", "offline-stt"),
    "groq": ("esl_agent.providers.groq_llm", "groq"),
    "anthropic": ("esl_agent.providers.anthropic_llm", "anthropic"),
    "openai": ("esl_agent.providers.openai_llm", "openai"),
    "scripted": ("esl_agent.providers.scripted_llm", ""),
    "google-tts": ("esl_agent.providers.google_tts", "google"),
    "offline-tts": ("esl_agent.providers.offline_tts", "offline-tts"),
    "tone": ("esl_agent.providers.tone_tts", ""),
}


def load_provider_module(provider: str) -> ModuleType:
    """Import a provider module; a missing optional package becomes a ConfigError."""
    module_name, extra = _MODULES[provider]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or "?"
        if missing.startswith("esl_agent"):
            raise
        hint = f"pip install 'esl-agent[{extra}]'" if extra else "reinstall esl-agent"
        raise ConfigError(
            f"provider {provider!r} needs the optional package {missing!r}: {hint}"
        ) from None


def build_stt(settings: SttSettings) -> SpeechToText:
    """The configured speech-to-text provider (`stt.provider`)."""
    if settings.provider == "google":
        mod = load_provider_module("google-stt")
        g = settings.google
        return mod.GoogleSpeechToText(g, endpoint=g.endpoint,
                                      credentials_file=secret(g.credentials_env))
    if settings.provider == "offline":
        mod = load_provider_module("offline-stt")
        return mod.OfflineSpeechToText(settings.offline)
    raise ConfigError(f"stt.provider: unknown provider {settings.provider!r}")


def build_llm(settings: LlmSettings, env: Mapping[str, str] = os.environ) -> LanguageModel:
    """A failover chain over `llm.chain`, in order, with `llm.first_token_timeout`."""
    from esl_agent.providers.failover import FailoverLanguageModel

    chain: list[LanguageModel] = []
    for name in settings.chain:
        chain.append(_build_one_llm(name, settings, env))
    return FailoverLanguageModel(chain, first_token_timeout=settings.first_token_timeout)


def _build_one_llm(name: str, settings: LlmSettings, env: Mapping[str, str]) -> LanguageModel:
    if name == "scripted":
        mod = load_provider_module("scripted")
        return mod.ScriptedLanguageModel(mod.load_script(settings.scripted.script))
    if name not in ("groq", "anthropic", "openai"):
        raise ConfigError(f"llm.chain: unknown provider {name!r}")
    options = getattr(settings, name)
    key = secret(options.api_key_env, env)
    if options.api_key_env and not key:
        raise ConfigError(f"llm.{name}.api_key_env: environment variable {options.api_key_env} is not set")
    mod = load_provider_module(name)
    timeout = settings.turn_timeout
    if name == "groq":
        return mod.GroqLanguageModel(options, base_url=options.base_url, api_key=key, timeout=timeout)
    if name == "anthropic":
        return mod.AnthropicLanguageModel(options, base_url=options.base_url, api_key=key,
                                          timeout=timeout)
    return mod.OpenAiLanguageModel(options, base_url=options.base_url, api_key=key, timeout=timeout)


def build_tts(settings: TtsSettings, sample_rate: int = 8000) -> TextToSpeech:
    """The configured text-to-speech provider (`tts.provider`) producing `sample_rate` PCM."""
    if settings.provider == "google":
        mod = load_provider_module("google-tts")
        g = settings.google
        return mod.GoogleTextToSpeech(g, endpoint=g.endpoint, sample_rate=sample_rate,
                                      credentials_file=secret(g.credentials_env))
    if settings.provider == "offline":
        mod = load_provider_module("offline-tts")
        return mod.OfflineTextToSpeech(settings.offline, sample_rate=sample_rate)
    if settings.provider == "tone":
        mod = load_provider_module("tone")
        return mod.ToneTextToSpeech(sample_rate=sample_rate)
    raise ConfigError(f"tts.provider: unknown provider {settings.provider!r}")
