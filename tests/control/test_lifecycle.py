"""A whole call through the simulator: answer, fork, audio both ways, a file, hangup, cleanup."""

from __future__ import annotations

import gc
import json
import os
import urllib.request

import gevent
import pytest

from esl_agent.sim.caller import CallerScript, speech_like
from esl_agent.sim.freeswitch import Faults
from tests.control.conftest import ToneHandler

pytestmark = pytest.mark.wire


def live_greenlets() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, gevent.Greenlet) and not o.dead)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def wait_for(predicate, timeout: float = 5.0) -> bool:
    with gevent.Timeout(timeout, False):
        while not predicate():
            gevent.sleep(0.01)
        return True
    return False


def test_one_call_end_to_end(controller_factory, sim_factory, greeting_wav) -> None:
    controller = controller_factory(lambda call: ToneHandler(call, greeting_wav, 1000.0))
    sim = sim_factory(controller)
    greenlets_before, fds_before = live_greenlets(), open_fds()

    script = CallerScript().say(speech_like(800), at=0.4).hangup(at=2.5)
    call = sim.place_call(caller_number="+4366412345", destination="+43720123456", script=script)
    assert call.wait(10), "the ESL session did not end"

    commands = call.commands
    first_words = [c.split("\n")[0] for c in commands]
    assert first_words[:4] == ["connect", "myevents", first_words[2], "linger"]
    assert first_words[2].startswith("event plain PLAYBACK_START PLAYBACK_STOP")
    answer_at = next(i for i, c in enumerate(commands) if "execute-app-name: answer" in c)
    fork_at = next(i for i, c in enumerate(commands) if c.startswith("api uuid_audio_fork"))
    assert answer_at < fork_at, "the fork must start only after the answer (fact 23)"
    greeting_at = next(i for i, c in enumerate(commands) if "execute-app-name: playback" in c)
    assert answer_at < greeting_at < fork_at, "the greeting file is queued right behind the answer"
    fork_cmd = commands[fork_at]
    url = f"ws://127.0.0.1:{controller.fork_server.port}/fork/{call.uuid}"
    metadata = json.dumps({"uuid": call.uuid, "mode": "stream"}, separators=(",", ":"))
    assert fork_cmd == f"api uuid_audio_fork {call.uuid} start {url} mono 8k esl_agent {metadata} true true 8000"
    assert commands[-1] == "exit"

    handler = ToneHandler.instances[0]
    assert handler.bytes_in >= 8000, "caller audio reached the handler"
    segments = call.recording.heard_segments()
    assert any(s["source"] == greeting_wav for s in segments), segments
    assert any(s["via"] != "file" and s["source"] == "stream" for s in segments), segments
    assert call.recording.state_events(), "state events reached FreeSWITCH"
    assert call.get_var("esl_agent_state") == "speaking"

    assert wait_for(lambda: not controller.calls)
    assert handler.closes == 1
    snap = controller.snapshot()
    assert snap["calls_total"] == 1 and snap["calls_active"] == 0
    assert snap["frames_in"] > 20 and snap["bytes_out"] == 6400
    sim.shutdown()
    assert wait_for(lambda: live_greenlets() <= greenlets_before, 5), (live_greenlets(), greenlets_before)
    assert wait_for(lambda: open_fds() <= fds_before, 5), (open_fds(), fds_before)


def test_fifty_calls_each_hear_their_own_audio(controller_factory, sim_factory, greeting_wav) -> None:
    freqs: dict[str, float] = {}

    def factory(call):
        freq = 300.0 + 40.0 * len(freqs)
        freqs[call.uuid] = freq
        return ToneHandler(call, greeting_wav, freq)

    controller = controller_factory(factory)
    sim = sim_factory(controller)
    calls = sim.run_calls(50, script_factory=lambda i: CallerScript().say(speech_like(700, seed=i), at=0.3)
                          .hangup(at=3.0))
    assert sim.wait_all(30)
    import numpy as np

    for call in calls:
        pcm = call.recording.samples().astype(np.float64)
        spectrum = np.abs(np.fft.rfft(pcm))
        peak_hz = np.argmax(spectrum[1:]) + 1
        peak_hz = peak_hz * 8000 / len(pcm)
        # the loudest tone the caller heard besides the 440 Hz greeting is this call's own reply
        spectrum[int(430 * len(pcm) / 8000):int(450 * len(pcm) / 8000)] = 0
        own = np.argmax(spectrum[1:]) + 1
        own_hz = own * 8000 / len(pcm)
        assert abs(own_hz - freqs[call.uuid]) < 5, (call.uuid, own_hz, freqs[call.uuid])
    assert wait_for(lambda: not controller.calls, 10)
    assert controller.snapshot()["calls_total"] == 50


def test_dtmf_reaches_the_handler(controller_factory, sim_factory, greeting_wav) -> None:
    controller = controller_factory(lambda call: ToneHandler(call, greeting_wav, 800.0))
    sim = sim_factory(controller)
    call = sim.place_call(script=CallerScript().dtmf("15", at=0.3).hangup(at=1.2))
    assert call.wait(10)
    assert ToneHandler.instances[0].digits == ["1", "5"]


def test_fork_connect_failure_gets_apology_and_hangup(controller_factory, sim_factory, greeting_wav,
                                                      apology_wav) -> None:
    controller = controller_factory(lambda call: ToneHandler(call, greeting_wav, 800.0))
    sim = sim_factory(controller, faults=Faults(fork_connect_fails=True))
    call = sim.place_call(script=CallerScript().hangup(at=10))
    assert call.wait(10)
    segments = call.recording.heard_segments()
    assert segments[-1]["source"] == apology_wav, "the caller heard the apology, not dead air"
    assert all(s["source"] in (greeting_wav, apology_wav) for s in segments)
    stops = [c for c in call.commands if c.startswith("api uuid_audio_fork") and " stop " in c + " "]
    assert stops, "the failed fork's media bug was removed (fact 15)"
    assert call.hangup_cause == "NORMAL_TEMPORARY_FAILURE"
    assert [h.closes for h in ToneHandler.instances] == [1], "the conversation was closed once"


def test_fallback_transfers_when_an_extension_is_configured(controller_factory, sim_factory, greeting_wav) -> None:
    controller = controller_factory(lambda call: ToneHandler(call, greeting_wav, 800.0),
                                    calls={"fallback_extension": "1000", "fallback_context": "public"})
    sim = sim_factory(controller, faults=Faults(fork_connect_fails=True))
    call = sim.place_call(script=CallerScript().hangup(at=10))
    assert call.wait(10)
    assert any(c.startswith(f"api uuid_transfer {call.uuid} 1000 XML public") for c in call.commands)


def test_handler_crash_falls_back_and_other_calls_continue(controller_factory, sim_factory, greeting_wav) -> None:
    def factory(call):
        if call.caller.number == "+4399999999":
            raise RuntimeError("boom")
        return ToneHandler(call, greeting_wav, 900.0)

    controller = controller_factory(factory)
    sim = sim_factory(controller)
    bad = sim.place_call(caller_number="+4399999999", script=CallerScript().hangup(at=8))
    good = sim.place_call(caller_number="+4366412345", script=CallerScript().say(speech_like(700), at=0.3)
                          .hangup(at=2.0))
    assert bad.wait(10) and good.wait(10)
    assert bad.hangup_cause == "NORMAL_TEMPORARY_FAILURE"
    assert any(s["source"].endswith("apology.wav") for s in bad.recording.heard_segments()), "apology played"
    assert any(s["source"] == "stream" for s in good.recording.heard_segments())


def test_caller_hangs_up_mid_playback(controller_factory, sim_factory, tmp_path) -> None:
    from esl_agent.media.wavfile import write_wav
    from tests.control.conftest import tone_pcm

    long_greeting = tmp_path / "long.wav"
    write_wav(long_greeting, tone_pcm(500, 5000), 8000)
    controller = controller_factory(lambda call: ToneHandler(call, str(long_greeting), 800.0))
    sim = sim_factory(controller)
    call = sim.place_call(script=CallerScript().hangup(at=1.0))
    assert call.wait(10)
    segs = call.recording.heard_segments()
    assert segs and segs[0]["interrupted"]
    assert wait_for(lambda: not controller.calls)
    assert ToneHandler.instances[0].closes == 1


def test_command_error_is_reported_and_call_still_ends_cleanly(controller_factory, sim_factory,
                                                               greeting_wav) -> None:
    controller = controller_factory(lambda call: ToneHandler(call, greeting_wav, 800.0))
    sim = sim_factory(controller, faults=Faults(api_errors={"uuid_setvar_multi": "-ERR No such channel!"}))
    call = sim.place_call(script=CallerScript().say(speech_like(700), at=0.3).hangup(at=2.0))
    assert call.wait(10)
    assert controller.snapshot()["commands_failed"] >= 1
    assert any(s["source"] == "stream" for s in call.recording.heard_segments())


@pytest.mark.parametrize("fault", [Faults(garbage_at=0.8), Faults(truncated_at=0.8), Faults(drop_at=0.8)])
def test_broken_event_socket_does_not_touch_other_calls(controller_factory, sim_factory, greeting_wav,
                                                        fault) -> None:
    controller = controller_factory(lambda call: ToneHandler(call, greeting_wav, 800.0))
    sim = sim_factory(controller)
    broken = sim.place_call(caller_number="+4311111111", script=CallerScript().hangup(at=5), faults=fault)
    fine = sim.place_call(caller_number="+4322222222",
                          script=CallerScript().say(speech_like(700), at=0.3).hangup(at=2.0))
    assert fine.wait(10)
    assert any(s["source"] == "stream" for s in fine.recording.heard_segments())
    broken.hangup()
    assert broken.wait(10)
    assert wait_for(lambda: not controller.calls, 10)


def test_health_and_metrics_endpoints(controller_factory) -> None:
    controller = controller_factory(lambda call: None)
    base = f"http://127.0.0.1:{controller.ops_server.port}"
    health = json.loads(urllib.request.urlopen(base + "/healthz", timeout=5).read())
    assert health["status"] == "ok" and health["calls_active"] == 0
    metrics = urllib.request.urlopen(base + "/metrics", timeout=5).read().decode()
    assert "esl_agent_calls_active 0.0" in metrics
    assert "esl_agent_audio_frames_in_total" in metrics


def test_call_record_with_cost(controller_factory, sim_factory, greeting_wav, tmp_path) -> None:
    from esl_agent.ops.call_records import CallRecords
    from esl_agent.ops.cost import Rates

    records = CallRecords(tmp_path / "calls.sqlite", Rates(inbound_per_minute=0.01, platform_per_minute=0.05,
                                                           billing_increment_s=1))
    controller = controller_factory(lambda call: ToneHandler(call, greeting_wav, 800.0),
                                    controller_options={"on_call_end": records.record})
    sim = sim_factory(controller)
    call = sim.place_call(caller_number="+4366412345", script=CallerScript().hangup(at=1.5))
    assert call.wait(10)
    assert wait_for(lambda: not controller.calls)
    record = CallRecords(tmp_path / "calls.sqlite").get(call.uuid)
    assert record is not None and record["uuid"] == call.uuid
    assert oct((tmp_path / "calls.sqlite").stat().st_mode & 0o777) == "0o600"
    assert record["caller"] == "+43******45"
    assert 1.0 < record["seconds"] < 3.0
    assert record["cost"] == pytest.approx(0.01 * 2 / 60 + 0.05 * record["seconds"] / 60, abs=1e-4)
    assert record["cost_per_minute"] > 0.05


def test_graceful_shutdown_drains_then_falls_back(controller_factory, sim_factory, greeting_wav) -> None:
    controller = controller_factory(lambda call: ToneHandler(call, greeting_wav, 800.0))
    sim = sim_factory(controller)
    call = sim.place_call(script=CallerScript().hangup(at=30))
    assert wait_for(lambda: controller.calls, 5)
    gevent.sleep(0.5)
    controller.shutdown(drain_seconds=0.5)
    assert call.wait(10)
    assert call.hangup_cause == "NORMAL_TEMPORARY_FAILURE"
    assert any(s["source"].endswith("apology.wav") for s in call.recording.heard_segments())
    late = sim.place_call(script=CallerScript().hangup(at=1))
    assert late.wait(10)
    assert not any(c.startswith("api uuid_audio_fork") for c in late.commands), "no new calls after shutdown"


def test_live_audio_before_the_fork_connects_is_kept(controller_factory, sim_factory) -> None:
    from tests.control.conftest import tone_pcm

    class LiveGreeting:
        def __init__(self, call) -> None:
            self.call = call

        def start(self) -> None:  # a cache miss: live TTS audio arrives before the fork is up
            self.call.send_audio(tone_pcm(700, 300), 1)

        def on_caller_audio(self, pcm: bytes) -> None:
            pass

        def on_dtmf(self, digit: str) -> None:
            pass

        def close(self) -> None:
            pass

    controller = controller_factory(LiveGreeting)
    sim = sim_factory(controller)
    call = sim.place_call(script=CallerScript().hangup(at=1.5))
    assert call.wait(10)
    streamed = [s for s in call.recording.heard_segments() if s["source"] == "stream"]
    assert streamed, "the early audio was played once the fork connected"
    assert controller.snapshot()["bytes_out"] == len(tone_pcm(700, 300))


def test_play_audio_mode_plays_the_modules_file(controller_factory, sim_factory, greeting_wav) -> None:
    controller = controller_factory(lambda call: ToneHandler(call, greeting_wav, 1000.0), fork={"mode": "play_audio"})
    sim = sim_factory(controller, fork_mode="play_audio")
    call = sim.place_call(script=CallerScript().say(speech_like(800), at=0.4).hangup(at=2.5))
    assert call.wait(10)
    fork_cmd = next(c for c in call.commands if c.startswith("api uuid_audio_fork") and " start " in c)
    assert fork_cmd.endswith('"mode":"play_audio"}'), "drachtio syntax: no streaming tokens"
    played = [c for c in call.commands if "execute-app-name: playback" in c and ".tmp.r8" in c]
    assert played, "the controller played the file mod_audio_fork wrote (fact 13)"
    segments = call.recording.heard_segments()
    assert any(s["source"].endswith(".tmp.r8") for s in segments), segments


def test_far_end_silent_gets_a_fallback(controller_factory, sim_factory, greeting_wav) -> None:
    controller = controller_factory(lambda call: ToneHandler(call, greeting_wav, 1000.0),
                                    fork={"caller_silence_timeout": 1.0})
    sim = sim_factory(controller)
    call = sim.place_call(script=CallerScript().hangup(at=20))
    assert wait_for(lambda: call.forks, 5)
    for fork in call.forks.values():  # the media stops reaching us (e.g. one-way RTP loss upstream)
        fork.paused = True
    assert call.wait(10)
    assert call.hangup_cause == "NORMAL_TEMPORARY_FAILURE"
    assert any(s["source"].endswith("apology.wav") for s in call.recording.heard_segments())


def test_turn_latency_histograms_on_metrics(controller_factory, sim_factory, greeting_wav) -> None:
    from esl_agent.pipeline.records import TurnTiming

    class Timed(ToneHandler):
        def __init__(self, call) -> None:
            super().__init__(call, greeting_wav, 600.0)
            self.timings = [TurnTiming(turn=1, end_of_turn=10.0, llm_first_token=10.2, first_audio=10.45)]

    controller = controller_factory(Timed)
    sim = sim_factory(controller)
    call = sim.place_call(script=CallerScript().hangup(at=1.0))
    assert call.wait(10) and wait_for(lambda: not controller.calls)
    base = f"http://127.0.0.1:{controller.ops_server.port}"
    metrics = urllib.request.urlopen(base + "/metrics", timeout=5).read().decode()
    assert 'esl_agent_turn_latency_seconds_bucket{le="0.5",stage="first_audio"} 1.0' in metrics
    assert 'esl_agent_turn_latency_seconds_bucket{le="0.2",stage="llm_first_token"} 1.0' in metrics
