"""The fair line for the model (access.fair_use), pure: a fake clock, threads only where a caller must block, events
to sequence them, no wall-clock bounds. One action runs at a time, the others wait in arrival order and are told
their place and the expected wait; per-visitor, per-minute and total limits refuse at once with a retry time."""
import threading
from functools import partial

import pytest

from prompt_lab.access import fair_use
from prompt_lab.access.fair_use import FIRST_GUESS_S, BusyError, FairLine, RateWindow, Waiting
from prompt_lab.errors import CancelledError

HANG_GUARD_S = 60  # only so a broken line fails instead of hanging; no test measures time


@pytest.fixture(autouse=True)
def _fresh_line():
    fair_use.reset()
    yield
    fair_use.reset()


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


def start(line: FairLine, ticket) -> None:
    """Wait for a ticket that is at the front: its turn comes without waiting."""
    assert list(line.wait(ticket)) == []


def test_first_come_first_served_with_the_place_and_expected_wait(clock):
    line = FairLine(clock=clock)
    a, b, c = (line.admit(v, "compare") for v in ("a", "b", "c"))
    start(line, a)  # the first runs at once
    guess = FIRST_GUESS_S["compare"]
    waiting_b = line.wait(b)
    assert next(waiting_b) == Waiting(ahead=1, expected_s=guess)  # before any action was timed: the first guess
    assert line.place(c) == Waiting(ahead=2, expected_s=2 * guess)
    assert line.snapshot() == {"running": 1, "waiting": 2}
    clock.now = 5.0
    assert line.place(b) == Waiting(1, guess - 5.0)  # the running one's remaining time
    line.leave(a)  # took 5 s: the mean is now 5 s
    with pytest.raises(StopIteration):  # b's turn
        next(waiting_b)
    assert line.place(b) == Waiting(0, 0.0) and line.place(c) == Waiting(1, 5.0)
    assert Waiting(1, 5.0).message() == "Waiting for the model: 1 action is ahead of yours, about 5 s."
    clock.now = 7.0
    line.leave(b)  # took 2 s: running mean 0.7 * 5 + 0.3 * 2
    start(line, c)
    d = line.admit("d", "compare")
    assert line.place(d).ahead == 1 and line.place(d).expected_s == pytest.approx(0.7 * 5 + 0.3 * 2)
    e = line.admit("e", "evaluate")  # each kind of action has its own mean
    assert line.place(e).expected_s == pytest.approx(2 * (0.7 * 5 + 0.3 * 2))
    assert line.place(line.admit("f", "compare")).expected_s == pytest.approx(2 * 4.1 + FIRST_GUESS_S["evaluate"])
    assert Waiting(0, 0).message() == "Starting…"
    assert Waiting(3, 0.2).message() == "Waiting for the model: 3 actions are ahead of yours, about 1 s."


def test_a_waiting_caller_blocks_until_the_one_before_it_leaves(clock):
    line = FairLine(clock=clock)
    first, second = line.admit("a", "compare"), line.admit("b", "compare")
    start(line, first)
    places, told, turn = [], threading.Event(), threading.Event()

    def caller():
        for place in line.wait(second, every_s=HANG_GUARD_S):  # woken by leave(), not by polling
            places.append(place)
            told.set()
        turn.set()

    thread = threading.Thread(target=caller, daemon=True)
    thread.start()
    assert told.wait(HANG_GUARD_S)
    assert not turn.is_set() and places == [Waiting(1, FIRST_GUESS_S["compare"])]
    line.leave(first)
    assert turn.wait(HANG_GUARD_S)
    thread.join(HANG_GUARD_S)
    assert second.started == clock.now and line.snapshot() == {"running": 1, "waiting": 0}


def test_a_visitor_may_have_only_so_many_actions_in_line(clock):
    line = FairLine(per_visitor=2, clock=clock)
    first, second = line.admit("a", "compare"), line.admit("a", "compare")
    start(line, first)
    clock.now = 4.0
    with pytest.raises(BusyError, match=r"^you already have 2 model actions waiting or running, the most one visitor "
                                        r"may; try again when one ends \(about 11 s\)$") as caught:
        line.admit("a", "compare")
    assert caught.value.retry_after_s == FIRST_GUESS_S["compare"] - 4.0  # when a's running action should end
    other = line.admit("b", "compare")  # others are still let in
    line.leave(first)
    third = line.admit("a", "compare")  # one of a's ended: a place again
    assert [t.visitor for t in (second, other, third)] == ["a", "b", "a"]
    assert line.snapshot() == {"running": 1, "waiting": 2}
    one = FairLine(per_visitor=1, clock=clock)
    one.admit("a", "compare")
    with pytest.raises(BusyError, match="you already have 1 model action waiting or running, the most one visitor "
                                        "may; try again when it ends"):
        one.admit("a", "evaluate")


def test_a_visitor_may_start_only_so_many_actions_a_minute(clock):
    line = FairLine(per_minute=3, clock=clock)
    for now in (0.0, 10.0, 20.0):
        clock.now = now
        line.leave(line.admit("a", "compare"))
    clock.now = 30.0
    with pytest.raises(BusyError, match=r"^you started 3 model actions in the last minute, the most one visitor may; "
                                        r"try again in 30 s$") as caught:
        line.admit("a", "compare")
    assert caught.value.retry_after_s == 30.0  # until the oldest start is a minute old
    line.leave(line.admit("b", "compare"))  # another visitor's starts count apart
    clock.now = 59.75
    with pytest.raises(BusyError, match="try again in 1 s$") as caught:
        line.admit("a", "compare")
    assert caught.value.retry_after_s == pytest.approx(0.25)
    clock.now = 60.0
    line.leave(line.admit("a", "compare"))  # the start at 0 s is a minute old
    with pytest.raises(BusyError) as caught:  # the starts at 10, 20 and 60 s are in the last minute
        line.admit("a", "compare")
    assert caught.value.retry_after_s == 10.0
    clock.now = 70.0
    line.admit("a", "compare")  # refusals did not count as starts


def test_the_line_holds_at_most_max_waiting_actions(clock):
    line = FairLine(max_waiting=3, clock=clock)
    tickets = [line.admit(f"v{i}", "compare") for i in range(4)]  # one running, three waiting
    start(line, tickets[0])
    with pytest.raises(BusyError, match=r"^the app is busy: 3 model actions are waiting, the most it queues; try "
                                        r"again in about \d+ s$") as caught:
        line.admit("v4", "compare")
    assert caught.value.retry_after_s > 0
    line.leave(tickets[0])
    fifth = line.admit("v4", "compare")
    with pytest.raises(BusyError, match="the app is busy"):
        line.admit("v5", "compare")
    line.leave(tickets[2])  # a waiting one giving up its place frees one too
    line.admit("v5", "compare")
    assert line.place(fifth).ahead == 2 and line.snapshot() == {"running": 1, "waiting": 3}


def test_cancel_while_waiting_leaves_the_line_and_the_next_moves_up(clock):
    line = FairLine(clock=clock)
    a, b, c = (line.admit(v, "compare") for v in ("a", "b", "c"))
    start(line, a)
    cancel = threading.Event()
    waiting = line.wait(b, cancel=cancel)
    assert next(waiting).ahead == 1 and line.place(c).ahead == 2
    clock.now = 1.0
    cancel.set()
    with pytest.raises(CancelledError, match="stopped while waiting for the model"):
        next(waiting)
    assert line.snapshot() == {"running": 1, "waiting": 1}
    assert line.place(c) == Waiting(1, FIRST_GUESS_S["compare"] - 1.0)  # c moved up behind the running one
    with pytest.raises(CancelledError):  # a ticket that left has no turn
        next(line.wait(b))
    line.leave(b)  # the caller's own finally: leaving twice is harmless
    clock.now = 2.0
    line.leave(a)
    start(line, c)
    clock.now = 8.0
    line.leave(c)  # the means: a ran 2 s, c 6 s; b, which waited 1 s and never started, is not timed
    d = line.admit("d", "compare")
    start(line, d)
    assert line.place(line.admit("e", "compare")).expected_s == pytest.approx(0.7 * 2 + 0.3 * 6)


def test_cancel_wakes_a_blocked_caller_on_its_next_check(clock):
    line = FairLine(clock=clock)
    a, b = line.admit("a", "compare"), line.admit("b", "compare")
    start(line, a)
    cancel, told, outcome = threading.Event(), threading.Event(), []

    def caller():
        try:
            for _ in line.wait(b, cancel=cancel, every_s=0.01):
                told.set()
        except CancelledError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=caller, daemon=True)
    thread.start()
    assert told.wait(HANG_GUARD_S)
    cancel.set()
    thread.join(HANG_GUARD_S)
    assert not thread.is_alive() and len(outcome) == 1
    assert line.snapshot() == {"running": 1, "waiting": 0}


def model_action(line: FairLine, visitor: str, work) -> None:
    """How a caller uses the line: admit, wait for the turn, work, and always leave."""
    ticket = line.admit(visitor, "compare")
    try:
        for _ in line.wait(ticket):
            pass
        work()
    finally:
        line.leave(ticket)


def test_an_error_during_the_turn_leaves_no_stuck_ticket(clock):
    line = FairLine(per_visitor=1, clock=clock)

    def fail():
        clock.now += 3
        raise RuntimeError("the model broke")

    with pytest.raises(RuntimeError, match="the model broke"):
        model_action(line, "a", fail)
    assert line.snapshot() == {"running": 0, "waiting": 0}
    done = []
    model_action(line, "a", lambda: done.append("a"))  # the same visitor, under a cap of 1, goes again at once
    model_action(line, "b", lambda: done.append("b"))
    assert done == ["a", "b"]


def test_a_caller_that_stops_listening_while_waiting_gives_up_its_place(clock):
    line = FairLine(clock=clock)
    first = line.admit("a", "compare")
    start(line, first)
    second = line.admit("b", "compare")
    try:
        waiting = line.wait(second)
        next(waiting)
        waiting.close()  # a closed page: the generator is dropped mid-wait
    finally:
        line.leave(second)
    assert line.snapshot() == {"running": 1, "waiting": 0}


def test_a_rate_window_counts_each_visitors_events_in_the_last_minute(clock):
    window = RateWindow(2, "saves", clock=clock)
    window.check("a")
    clock.now = 15.0
    window.check("a")
    with pytest.raises(BusyError, match=r"^you made 2 saves in the last minute, the most one visitor may; try again "
                                        r"in 45 s$") as caught:
        window.check("a")
    assert caught.value.retry_after_s == 45.0
    window.check("b")
    clock.now = 59.0
    with pytest.raises(BusyError):  # refusals are not counted ...
        window.check("a")
    clock.now = 60.0
    window.check("a")  # ... so a minute after the first, one more
    with pytest.raises(BusyError, match="try again in 15 s"):
        window.check("a")
    unlimited = RateWindow(0, "saves", clock=clock)
    for _ in range(1000):
        unlimited.check("a")


def test_check_save_uses_the_settings_and_reset_forgets(monkeypatch, clock):
    monkeypatch.setattr(fair_use, "RateWindow", partial(RateWindow, clock=clock))
    for _ in range(50):  # locally: no limit
        fair_use.check_save("a")
    fair_use.reset()
    monkeypatch.setenv("SPACE_ID", "owner/space")  # a Space's default: 10 a minute
    for _ in range(10):
        fair_use.check_save("a")
    with pytest.raises(BusyError, match="you made 10 saves in the last minute"):
        fair_use.check_save("a")
    fair_use.check_save("b")
    fair_use.reset()
    monkeypatch.setenv("PROMPT_LAB_SAVES_PER_MINUTE", "1")
    fair_use.check_save("a")  # a fresh window, sized by the settings now
    with pytest.raises(BusyError, match="you made 1 saves"):
        fair_use.check_save("a")


def test_the_model_line_is_sized_by_the_settings(monkeypatch):
    local = fair_use.model_line()
    assert (local.max_waiting, local.per_visitor, local.per_minute, local.slots) == (16, 0, 0, 1)
    assert fair_use.model_line() is local  # one line per process
    fair_use.reset()
    monkeypatch.setenv("SPACE_ID", "owner/space")
    space = fair_use.model_line()
    assert space is not local and (space.max_waiting, space.per_visitor, space.per_minute) == (16, 2, 6)
    fair_use.reset()
    monkeypatch.setenv("PROMPT_LAB_MAX_WAITING", "3")
    monkeypatch.setenv("PROMPT_LAB_MAX_QUEUED_PER_VISITOR", "0")
    monkeypatch.setenv("PROMPT_LAB_ACTIONS_PER_MINUTE", "-5")  # a negative limit is no limit, not a refusal
    line = fair_use.model_line()
    assert (line.max_waiting, line.per_visitor, line.per_minute) == (3, 0, 0)
    for _ in range(3):
        line.admit("a", "compare")


def test_the_counts_keep_only_the_last_minutes_visitors(clock):
    """Every API session is a new visitor: a visitor with no start in the last minute is forgotten, so the tables
    hold the last minute's visitors, not everyone who ever came."""
    line = FairLine(max_waiting=1000, per_minute=5, clock=clock)
    window = RateWindow(5, "saves", clock=clock)
    for i in range(200):
        line.leave(line.admit(f"api:{i}", "compare"))
        window.check(f"api:{i}")
    clock.now += 61
    line.leave(line.admit("late", "compare"))
    window.check("late")
    assert set(line._starts._events) == {"late"} and set(window._events) == {"late"}


def test_the_busy_retry_time_is_the_running_actions_remaining_time(clock):
    """A full line frees a waiting place when the running action ends: that is the time to retry."""
    line = FairLine(max_waiting=1, clock=clock)
    running = line.admit("a", "compare")
    list(line.wait(running))
    line.admit("b", "compare")
    clock.now += 5
    with pytest.raises(BusyError) as refused:
        line.admit("c", "compare")
    assert refused.value.retry_after_s == pytest.approx(FIRST_GUESS_S["compare"] - 5)
