"""Benchmarks and fault drills for esl-agent (`python -m benchmarks --out BENCHMARKS.md [--quick]`).

Three processes: this orchestrator (plain Python, no gevent), the controller under test
(`benchmarks.controller`) and the load process (`benchmarks.loadgen`: FreeSWITCH simulator plus
loopback Google STT/TTS and OpenAI-compatible servers with fixed latencies). Every figure is taken
from timestamps recorded on the wire by the simulator and the loopback servers (CLOCK_MONOTONIC is
shared by all processes on Linux), never from the controller's logs.
"""
