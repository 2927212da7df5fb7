"""The load process: `python -m benchmarks.loadgen` (driven over stdin/stdout by benchmarks.run).

Hosts the FreeSWITCH simulator and the loopback providers in a process of its own, so none of
their CPU is charged to the controller. Prints one JSON line with the provider ports, then runs
one scenario per JSON command and answers with its measurements (all derived from wire
timestamps recorded here: the simulator's recorder and the loopback servers).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from esl_agent import runtime

runtime.init()

import gevent  # noqa: E402

from benchmarks import scenarios  # noqa: E402
from benchmarks.common import CALLER_TEXT, send, stdin_lines  # noqa: E402
from benchmarks.servers import BenchGoogle, BenchLlm  # noqa: E402
from esl_agent.sim.google_grpc import SttScript, TtsScript  # noqa: E402


class Lab:
    """The loopback servers and the latencies currently configured on them."""

    def __init__(self) -> None:
        self.google = BenchGoogle(SttScript(utterances=[CALLER_TEXT] * 1_000_000, interim_every_ms=100),
                                  TtsScript(first_chunk_delay=0.0, chunk_delay=0.0, chunk_ms=100,
                                            ms_per_char=20.0)).start()
        self.llm = BenchLlm("primary").start()
        self.llm2 = BenchLlm("secondary").start()
        self.esl_port = 0

    def configure(self, latencies: dict[str, float]) -> None:
        """Fixed latencies of the loopback providers (seconds)."""
        tts = self.google.tts
        tts.first_chunk_delay = latencies["tts_first_byte"]
        tts.chunk_delay = latencies["tts_chunk_interval"]
        self.google.stt.end_silence_ms = int(latencies["stt_end_silence_ms"])
        for server in (self.llm, self.llm2):
            server.faults.first_chunk_delay = latencies["llm_first_token"]
            server.faults.chunk_delay = latencies["llm_token_interval"]


def main() -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # The load process is the measuring apparatus: hand the GIL to grpc's native poller threads
    # quickly so the loopback servers add as little delay of their own as possible.
    sys.setswitchinterval(0.0005)
    lab = Lab()
    send({"ready": True, "stt_port": lab.google.port, "llm_port": lab.llm.port, "llm2_port": lab.llm2.port})
    for line in stdin_lines():
        import json

        cmd: dict[str, Any] = json.loads(line)
        op = cmd.pop("op")
        if op == "quit":
            break
        started = time.monotonic()
        try:
            if op == "configure":
                lab.esl_port = cmd.get("esl_port", lab.esl_port)
                lab.configure(cmd["latencies"])
                result: dict[str, Any] = {"ok": True}
            else:
                result = getattr(scenarios, op)(lab, **cmd)
        except Exception as exc:  # report, keep serving
            logging.getLogger("benchmarks.loadgen").exception("scenario %s failed", op)
            result = {"error": f"{type(exc).__name__}: {exc}"}
        result["wall_s"] = round(time.monotonic() - started, 2)
        send(result)
    gevent.sleep(0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
