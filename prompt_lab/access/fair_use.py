"""Fair use of the one model: a waiting line with per-visitor caps, rate limits, and the expected wait.

One model action (a compare, an evaluation, a run again) runs at a time; the others wait in arrival order. A
visitor may have at most `per_visitor` actions waiting or running and start at most `per_minute` a minute, and at
most `max_waiting` actions wait in all; beyond that a request is refused at once with the time after which a retry
can succeed (BusyError), so a crowd is told to come back instead of piling up memory. While waiting, a caller is
told its place in line and the expected wait: the recent mean duration of each action kind ahead of it.
"""
from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Callable, Iterator

from prompt_lab.errors import CancelledError, PromptLabError
from prompt_lab.settings import get_settings

# A first guess of each action's duration, in seconds, until this process has timed some (then a running mean).
FIRST_GUESS_S = {"compare": 15.0, "evaluate": 90.0, "run_again": 15.0, "resume_evaluation": 90.0, "search": 120.0,
                 "resume_search": 120.0}


class BusyError(PromptLabError):
    """A request refused by a fair-use limit; retry_after_s says when a retry can succeed."""

    def __init__(self, message: str, retry_after_s: float):
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass
class Ticket:
    visitor: str
    action: str
    number: int
    started: float | None = None  # monotonic time its turn began


@dataclass
class Waiting:
    """A caller's place in line: `ahead` actions run or wait before it; expected_s is the estimated wait."""
    ahead: int
    expected_s: float

    def message(self) -> str:
        if self.ahead == 0:
            return "Starting…"
        place = "1 action is" if self.ahead == 1 else f"{self.ahead} actions are"
        return f"Waiting for the model: {place} ahead of yours, about {max(1, round(self.expected_s))} s."


@dataclass
class FairLine:
    max_waiting: int = 16
    per_visitor: int = 0  # 0: no limit
    per_minute: int = 0  # 0: no limit
    slots: int = 1
    clock: Callable[[], float] = time.monotonic
    _line: list[Ticket] = field(default_factory=list)  # running first (the first `slots`), then waiting
    _means: dict[str, float] = field(default_factory=dict)
    _numbers: int = 0
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        self._starts = RateWindow(self.per_minute, "model actions", clock=self.clock, verb="started")

    def admit(self, visitor: str, action: str) -> Ticket:
        """A place in line, or BusyError naming the limit reached and when to retry."""
        with self._cond:
            self._starts.refuse(visitor)
            mine = [t for t in self._line if t.visitor == visitor]
            if self.per_visitor and len(mine) >= self.per_visitor:
                wait = self._expected(self._line.index(mine[0]) + 1)
                raise BusyError(f"you already have {len(mine)} model action{'s' if len(mine) != 1 else ''} waiting "
                                f"or running, the most one visitor may; try again when "
                                f"{'it ends' if len(mine) == 1 else 'one ends'} (about {max(1, round(wait))} s)", wait)
            waiting = max(0, len(self._line) - self.slots)
            if waiting >= self.max_waiting:
                wait = self._expected(len(self._line) - waiting)  # a place frees when the running action ends
                raise BusyError(f"the app is busy: {waiting} model actions are waiting, the most it queues; try "
                                f"again in about {max(1, round(wait))} s", wait)
            self._numbers += 1
            ticket = Ticket(visitor, action, self._numbers)
            self._line.append(ticket)
            self._starts.record(visitor)
            return ticket

    def place(self, ticket: Ticket) -> Waiting:
        with self._cond:
            return self._place(ticket)

    def wait(self, ticket: Ticket, *, cancel: threading.Event | None = None, every_s: float = 1.0) -> Iterator[Waiting]:
        """Yield the ticket's place about every `every_s` seconds until its turn comes (then return). A set `cancel`
        gives up the place (CancelledError)."""
        while True:
            with self._cond:
                if ticket not in self._line:
                    raise CancelledError("left the line")
                position = self._line.index(ticket)
                if position < self.slots:
                    ticket.started = self.clock()
                    return
                where = self._place(ticket)
            try:
                yield where
            except GeneratorExit:  # the caller stopped listening: its place goes to the next
                self.leave(ticket)
                raise
            if cancel is not None and cancel.is_set():
                self.leave(ticket)
                raise CancelledError("stopped while waiting for the model")
            with self._cond:
                if ticket in self._line and self._line.index(ticket) >= self.slots:
                    self._cond.wait(every_s)

    def leave(self, ticket: Ticket) -> None:
        """The action ended (or gave up its place): the next in line may start."""
        with self._cond:
            if ticket in self._line:
                self._line.remove(ticket)
                if ticket.started is not None:
                    took = self.clock() - ticket.started
                    mean = self._means.get(ticket.action)
                    self._means[ticket.action] = took if mean is None else 0.7 * mean + 0.3 * took
            self._cond.notify_all()

    def _duration(self, ticket: Ticket) -> float:
        mean = self._means.get(ticket.action, FIRST_GUESS_S.get(ticket.action, 30.0))
        if ticket.started is not None:
            return max(1.0, mean - (self.clock() - ticket.started))
        return mean

    def _expected(self, upto: int) -> float:
        ahead = self._line[:upto]
        return sum(self._duration(t) for t in ahead) / max(1, self.slots)

    def _place(self, ticket: Ticket) -> Waiting:
        position = self._line.index(ticket)
        return Waiting(position - self.slots + 1 if position >= self.slots else 0, self._expected(position))

    def snapshot(self) -> dict:
        """How many actions run and wait, for a status line and for tests."""
        with self._cond:
            return {"running": min(len(self._line), self.slots), "waiting": max(0, len(self._line) - self.slots)}


class RateWindow:
    """At most `per_minute` events per visitor in any 60 s (0: no limit). Visitors with nothing in the last minute
    are forgotten, so the table holds the last minute's visitors, however many came before."""

    def __init__(self, per_minute: int, what: str, clock: Callable[[], float] = time.monotonic, verb: str = "made"):
        self.per_minute, self.what, self.clock, self.verb = per_minute, what, clock, verb
        self._events: dict[str, deque] = defaultdict(deque)
        self._lock = threading.Lock()

    def check(self, visitor: str) -> None:
        """Refuse (BusyError) a visitor at the limit, else count this event."""
        with self._lock:
            self._refuse(visitor)
            self._record(visitor)

    def refuse(self, visitor: str) -> None:
        """Refuse a visitor at the limit without counting anything (the caller records once it is admitted)."""
        with self._lock:
            self._refuse(visitor)

    def record(self, visitor: str) -> None:
        with self._lock:
            self._record(visitor)

    def _refuse(self, visitor: str) -> None:
        if not self.per_minute:
            return
        now = self.clock()
        for who in list(self._events):
            events = self._events[who]
            while events and now - events[0] >= 60:
                events.popleft()
            if not events:
                del self._events[who]
        events = self._events.get(visitor)
        if events and len(events) >= self.per_minute:
            wait = 60 - (now - events[0])
            raise BusyError(f"you {self.verb} {len(events)} {self.what} in the last minute, the most one visitor "
                            f"may; try again in {max(1, round(wait))} s", wait)

    def _record(self, visitor: str) -> None:
        if self.per_minute:
            self._events[visitor].append(self.clock())


_line: FairLine | None = None
_saves: RateWindow | None = None
_lock = threading.Lock()


def model_line() -> FairLine:
    """This process's line for the model, sized by the settings when first used."""
    global _line
    with _lock:
        if _line is None:
            s = get_settings()
            _line = FairLine(max_waiting=max(0, s.max_waiting), per_visitor=max(0, s.max_queued_per_visitor),
                             per_minute=max(0, s.actions_per_minute))
        return _line


def check_save(visitor: str) -> None:
    """A visitor's saves (templates, tune jobs) stay within saves_per_minute."""
    global _saves
    with _lock:
        if _saves is None:
            _saves = RateWindow(max(0, get_settings().saves_per_minute), "saves")
        window = _saves
    window.check(visitor)


def reset() -> None:
    """Forget the line and the counts (tests; settings changed)."""
    global _line, _saves
    with _lock:
        _line, _saves = None, None
