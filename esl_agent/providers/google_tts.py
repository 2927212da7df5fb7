"""Google Cloud Text-to-Speech v1: StreamingSynthesize (Chirp 3 HD voices) or SynthesizeSpeech.

Audio is requested as headerless PCM (`AudioEncoding.PCM`) at the call's sample rate; should a
server still answer with a WAV header (LINEAR16), the header is stripped. In streaming mode the
config request goes first, then the sentence, and audio chunks are yielded as they arrive; once
the turn is cancelled the gRPC call is cancelled and iteration stops.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import gevent
from google.api_core import exceptions as gexc
from google.cloud import texttospeech_v1 as tts
from google.cloud.texttospeech_v1.services.text_to_speech.transports import (
    TextToSpeechGrpcTransport,
)

from esl_agent.config import GoogleTtsSettings
from esl_agent.errors import ProviderError, ProviderTimeout
from esl_agent.providers.base import TtsCapabilities, TurnToken
from esl_agent.providers.google_common import make_client

_CHUNK_MS = 200  # non-streaming audio is handed out in pieces this long


class GoogleTextToSpeech:
    """TextToSpeech over Google TTS v1 with one shared client."""

    def __init__(
        self,
        options: GoogleTtsSettings,
        *,
        endpoint: str = "",
        sample_rate: int = 8000,
        credentials_file: str = "",
        timeout: float = 15.0,
    ) -> None:
        self.name = "google"
        self.options = options
        self.voice = options.voice
        self.sample_rate = sample_rate
        self.timeout = timeout
        self.capabilities = TtsCapabilities(streaming=options.streaming, voices=(options.voice,))
        self.client = make_client(tts.TextToSpeechClient, TextToSpeechGrpcTransport,
                                  endpoint=endpoint, insecure=options.insecure,
                                  credentials_file=credentials_file)

    def synthesize(self, text: str, turn: TurnToken) -> Iterator[bytes]:
        """Yield L16 PCM at `sample_rate` for one sentence; stop once the turn is cancelled."""
        if not text.strip() or turn.cancelled:
            return iter(())
        if self.options.streaming:
            return self._streaming(text, turn)
        return self._unary(text, turn)

    def _voice(self) -> Any:
        return tts.VoiceSelectionParams(language_code=self.options.language, name=self.voice)

    def _streaming(self, text: str, turn: TurnToken) -> Iterator[bytes]:
        requests = iter([
            tts.StreamingSynthesizeRequest(streaming_config=tts.StreamingSynthesizeConfig(
                voice=self._voice(),
                streaming_audio_config=tts.StreamingAudioConfig(
                    audio_encoding=tts.AudioEncoding.PCM, sample_rate_hertz=self.sample_rate,
                    speaking_rate=self.options.speaking_rate))),
            tts.StreamingSynthesizeRequest(input=tts.StreamingSynthesisInput(text=text)),
        ])
        call = None
        carry = b""  # keep chunks sample-aligned (even byte counts)
        # Opened in a child greenlet: a barge-in that kills us while the call is being opened must
        # still cancel it (see finally), or the sentence would be synthesised for nothing.
        opener = gevent.spawn(self.client.streaming_synthesize, requests=requests, retry=None,
                              timeout=self.timeout)
        try:
            call = opener.get()
            for response in call:
                if turn.cancelled:
                    return
                data = carry + response.audio_content
                cut = len(data) - len(data) % 2
                carry = data[cut:]
                if cut:
                    yield data[:cut]
        except gexc.GoogleAPICallError as exc:
            raise _provider_error(exc) from exc
        finally:
            if call is None:
                opener.link_value(lambda g: g.value.cancel() if g.value.is_active() else None)
            elif call.is_active():
                call.cancel()

    def _unary(self, text: str, turn: TurnToken) -> Iterator[bytes]:
        try:
            response = self.client.synthesize_speech(
                input=tts.SynthesisInput(text=text), voice=self._voice(),
                audio_config=tts.AudioConfig(
                    audio_encoding=tts.AudioEncoding.PCM, sample_rate_hertz=self.sample_rate,
                    speaking_rate=self.options.speaking_rate),
                retry=None, timeout=self.timeout)
        except gexc.GoogleAPICallError as exc:
            raise _provider_error(exc) from exc
        pcm = strip_wav_header(response.audio_content)
        step = self.sample_rate * _CHUNK_MS // 1000 * 2
        for offset in range(0, len(pcm), step):
            if turn.cancelled:
                return
            yield pcm[offset:offset + step]


def strip_wav_header(audio: bytes) -> bytes:
    """Return the PCM samples of a RIFF/WAVE file, or `audio` unchanged if it has no header."""
    if len(audio) < 12 or audio[:4] != b"RIFF" or audio[8:12] != b"WAVE":
        return audio
    pos = 12
    while pos + 8 <= len(audio):
        chunk_id = audio[pos:pos + 4]
        (size,) = struct.unpack("<I", audio[pos + 4:pos + 8])
        if chunk_id == b"data":
            return audio[pos + 8:pos + 8 + size]
        pos += 8 + size + (size & 1)
    return audio[44:]


def _provider_error(exc: gexc.GoogleAPICallError) -> ProviderError:
    if isinstance(exc, gexc.DeadlineExceeded):
        return ProviderTimeout(f"google tts: deadline exceeded: {exc.message}")
    return ProviderError(f"google tts: {type(exc).__name__}: {exc.message}")
