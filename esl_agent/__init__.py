"""esl-agent: a self-hosted AI phone agent for FreeSWITCH.

One gevent process owns each call's control (outbound event socket) and media (mod_audio_fork
WebSocket); see README.md for the architecture.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
