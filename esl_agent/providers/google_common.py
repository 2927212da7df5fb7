"""Client construction shared by the Google STT and TTS providers."""

from __future__ import annotations

from typing import Any

import grpc


def make_client(client_cls: Any, transport_cls: Any, *, endpoint: str, insecure: bool,
                credentials_file: str) -> Any:
    """Build one GAPIC client.

    `endpoint` empty = the public Google endpoint with Application Default Credentials (or the
    service-account JSON at `credentials_file`). With `insecure`, a plaintext channel to
    `endpoint` (loopback test servers only): credentials are then not used at all.
    """
    if endpoint and insecure:
        channel = grpc.insecure_channel(endpoint)
        return client_cls(transport=transport_cls(channel=channel))
    kwargs: dict[str, Any] = {}
    if credentials_file:
        from google.oauth2 import service_account

        kwargs["credentials"] = service_account.Credentials.from_service_account_file(
            credentials_file)
    if endpoint:
        kwargs["client_options"] = {"api_endpoint": endpoint}
    return client_cls(**kwargs)
