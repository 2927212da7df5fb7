"""The one place that patches the process for gevent and prepares grpc for it.

Call `init()` first thing in every entry point (CLI, tests' conftest, benchmarks). It is idempotent.
"""

from __future__ import annotations

_done = False


def init() -> None:
    """Monkey-patch the standard library for gevent and, if grpc is installed, init its gevent mode."""
    global _done
    if _done:
        return
    _done = True
    from gevent import monkey

    monkey.patch_all()
    import platform

    # platform.platform() forks `uname -p` the first time (the OpenAI/Groq SDKs call it on their
    # first request); do it now, not in a caller's first turn.
    platform.platform()
    try:
        import grpc.experimental.gevent as grpc_gevent
    except ImportError:  # grpc is an optional extra
        return
    grpc_gevent.init_gevent()
