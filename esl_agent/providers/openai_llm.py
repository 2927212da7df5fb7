"""Any OpenAI-compatible chat endpoint (OpenAI, Ollama, vLLM, llama.cpp) via the openai SDK."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import openai

from esl_agent.config import HttpLlmSettings
from esl_agent.providers.base import LlmEvent, Message, ToolSpec, TurnToken
from esl_agent.providers.openai_chat import chat_request, chat_stream

DEFAULT_BASE_URL = "https://api.openai.com/v1"

# Local servers (Ollama, llama.cpp) need no key, but the SDK insists on a non-empty one.
_NO_KEY = "not-needed"


class OpenAiLanguageModel:
    """Streams replies from `base_url` + `/chat/completions`; retries are left to failover."""

    def __init__(
        self,
        options: HttpLlmSettings,
        *,
        base_url: str,
        api_key: str = "",
        timeout: float = 20.0,
        connect_timeout: float = 3.0,
        name: str = "openai",
    ) -> None:
        self.name = name
        self.options = options
        self.client = openai.OpenAI(
            api_key=api_key or _NO_KEY,
            base_url=base_url or DEFAULT_BASE_URL,  # never the SDK's env lookup
            max_retries=0,
            timeout=openai.Timeout(timeout, connect=connect_timeout),
        )

    def stream(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec], turn: TurnToken
    ) -> Iterator[LlmEvent]:
        """Stream one reply: TextDelta..., ToolCall..., then Usage."""
        request = chat_request(self.options, messages, tools, stream_options={"include_usage": True})
        return chat_stream(self.client.chat.completions.create, openai, self.name, request, turn)
