"""Groq chat completions via the groq SDK (OpenAI chunk format, decoded by openai_chat)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import groq

from esl_agent.config import HttpLlmSettings
from esl_agent.providers.base import LlmEvent, Message, ToolSpec, TurnToken
from esl_agent.providers.openai_chat import chat_request, chat_stream

DEFAULT_BASE_URL = "https://api.groq.com"


class GroqLanguageModel:
    """Streams replies from Groq (`base_url` empty = https://api.groq.com); no SDK retries."""

    def __init__(
        self,
        options: HttpLlmSettings,
        *,
        base_url: str,
        api_key: str,
        timeout: float = 20.0,
        connect_timeout: float = 3.0,
    ) -> None:
        self.name = "groq"
        self.options = options
        self.client = groq.Groq(
            api_key=api_key or "missing-key",
            base_url=base_url or DEFAULT_BASE_URL,  # never the SDK's env lookup
            max_retries=0,
            timeout=groq.Timeout(timeout, connect=connect_timeout),
        )

    def stream(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec], turn: TurnToken
    ) -> Iterator[LlmEvent]:
        """Stream one reply: TextDelta..., ToolCall..., then Usage."""
        # Groq reports usage in the final chunk's x_groq (its SDK rejects stream_options)
        request = chat_request(self.options, messages, tools)
        return chat_stream(self.client.chat.completions.create, groq, self.name, request, turn)
