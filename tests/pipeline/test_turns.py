"""TurnClock: ids, cancellation order, group kill without blocking, renew."""

from __future__ import annotations

import gevent
import gevent.event

from esl_agent.pipeline.turns import GeventClock, TurnClock


def test_begin_gives_increasing_ids_and_cancels_the_previous_turn() -> None:
    clock = TurnClock()
    first = clock.begin()
    assert (first.id, first.cancelled, clock.current) == (1, False, 1)
    second = clock.begin()
    assert second.id == 2
    assert first.cancelled and not second.cancelled
    assert clock.turn is second


def test_interrupt_bumps_the_id_before_the_old_work_dies() -> None:
    clock = TurnClock()
    turn = clock.begin()
    seen: list[bool] = []
    finished = gevent.event.Event()

    def worker() -> None:
        try:
            gevent.sleep(30)
        finally:
            seen.append(turn.cancelled)  # already cancelled when its finally runs
            finished.set()

    turn.spawn(worker)
    gevent.sleep(0)
    new_id = clock.interrupt("barge-in")
    assert new_id == 2 and clock.current == 2 and turn.cancelled
    assert clock.turn is None and clock.last_reason == "barge-in"
    assert finished.wait(timeout=2)
    assert seen == [True]
    assert turn.group.join(timeout=2)
    assert len(turn.group) == 0


def test_interrupt_does_not_block_when_called_from_inside_the_turn() -> None:
    clock = TurnClock()
    turn = clock.begin()
    reached = gevent.event.Event()
    after_yield: list[str] = []

    def worker() -> None:
        clock.interrupt("from inside")
        reached.set()  # interrupt returned without blocking on our own death
        gevent.sleep(0)
        after_yield.append("still alive")

    g = turn.spawn(worker)
    assert reached.wait(timeout=2)
    g.join(timeout=2)
    assert g.dead and after_yield == []


def test_renew_keeps_the_turn_current_under_a_new_id() -> None:
    clock = TurnClock()
    turn = clock.begin()
    assert clock.renew(turn) == 2
    assert turn.id == 2 and not turn.cancelled
    clock.interrupt("x")
    assert clock.renew(turn) == 3 and turn.id == 2 and turn.cancelled


def test_gevent_clock_call_later_can_be_cancelled() -> None:
    clock = GeventClock()
    fired = gevent.event.Event()
    timer = clock.call_later(0.01, fired.set)
    timer.kill()
    assert not fired.wait(timeout=0.05)
    t0 = clock.now()
    clock.call_later(0, fired.set)
    assert fired.wait(timeout=2) and clock.now() >= t0
