"""The servers behind one endpoint (its replicas) as this process sees them: one HTTP pool per server, a limit on
requests in flight per server, and which servers are down. A request takes a slot on the live replica with the
fewest requests in flight; a replica that fails (connection refused or lost, timeout, 5xx after its retries) is
skipped for COOL_OFF_S seconds while its requests go to the others. Shared by every backend and caller in the
process, so two evaluations on one endpoint together respect its limits."""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

from prompt_lab.errors import CancelledError
from prompt_lab.models.remote.endpoints import Endpoint, RemoteModelError

T = TypeVar("T")

COOL_OFF_S = 30.0  # how long a failed replica is passed over (then it gets requests again, and proves itself)

log = logging.getLogger(__name__)


@dataclass
class Replica:
    """One server of an endpoint: its address, requests in flight, when it was last picked (a sequence number),
    when it last failed, until when it counts as down, and whether it is failing."""

    url: str
    in_flight: int = 0
    picked: int = 0
    failed_at: float = 0.0
    down_until: float = 0.0
    failing: bool = False


class ReplicaSet:
    """The replicas of one endpoint with their per-replica limit (the endpoint's max_concurrency)."""

    def __init__(self, name: str, urls: tuple[str, ...], limit: int):
        self.name, self.limit = name, max(1, limit)
        self.replicas = [Replica(url) for url in urls]
        self._picks = 0
        self._cond = threading.Condition()

    def __len__(self) -> int:
        return len(self.replicas)

    def acquire(self, tried: set[str], cancel=None) -> Replica | None:
        """A slot on the replica this request should go to: among those it has not tried, the live ones (or, when
        every one is down, the one back soonest), the least busy with a free slot, on a tie the one picked least
        recently (so one-at-a-time requests take turns); waits while all are full.
        None when the request has tried every replica."""
        with self._cond:
            while True:
                untried = [r for r in self.replicas if r.url not in tried]
                if not untried:
                    return None
                now = time.monotonic()
                live = [r for r in untried if r.down_until <= now] or [min(untried, key=lambda r: r.down_until)]
                free = [r for r in live if r.in_flight < self.limit]
                if free:
                    replica = min(free, key=lambda r: (r.in_flight, r.picked))
                    self._picks += 1
                    replica.in_flight, replica.picked = replica.in_flight + 1, self._picks
                    return replica
                if cancel is not None and cancel.is_set():
                    raise CancelledError("generation stopped")
                self._cond.wait(0.25)

    def acquire_on(self, replica: Replica, cancel=None) -> None:
        """A slot on this replica (a retry goes back to the server that answered 429/5xx); waits while it is full."""
        with self._cond:
            while replica.in_flight >= self.limit:
                if cancel is not None and cancel.is_set():
                    raise CancelledError("generation stopped")
                self._cond.wait(0.25)
            replica.in_flight += 1

    def release(self, replica: Replica) -> None:
        with self._cond:
            replica.in_flight -= 1
            self._cond.notify_all()

    def mark_down(self, replica: Replica, reason: str) -> None:
        """Pass this replica over for COOL_OFF_S seconds. Logged when the endpoint has others to go to: a warning when
        it had been answering, a note when a try after its cool-off failed too."""
        with self._cond:
            news = not replica.failing
            again = not news and replica.down_until <= time.monotonic()
            replica.failing, replica.failed_at = True, time.monotonic()
            replica.down_until = replica.failed_at + COOL_OFF_S
            self._cond.notify_all()
        if len(self.replicas) > 1 and (news or again):
            (log.warning if news else log.info)(
                "endpoint '%s': replica %s is %s (%s); its requests go to the other replicas for %g s", self.name,
                replica.url, "down" if news else "still down", reason, COOL_OFF_S)

    def mark_up(self, replica: Replica, sent_at: float) -> None:
        """The replica answered a request sent at sent_at (time.monotonic()): live again, unless that request was
        sent before its last failure (an answer already under way says nothing about the server now)."""
        with self._cond:
            if sent_at < replica.failed_at:
                return
            was_down, replica.failing, replica.down_until = replica.failing, False, 0.0
        if was_down and len(self.replicas) > 1:
            log.warning("endpoint '%s': replica %s answers again", self.name, replica.url)


class ReplicaFailed(Exception):
    """A replica failed a request in a way another may not (unreachable, connection lost, timeout, 429/5xx after
    its retries); `error` says how. A 4xx that is the request's own fault is raised as itself instead."""

    def __init__(self, error: RemoteModelError):
        super().__init__(str(error))
        self.error = error


def with_failover(replicas: ReplicaSet, send: Callable[[Replica], T], what: str, scrub: Callable[[str], str],
                  cancel=None) -> T:
    """send(replica) on the replica acquire() picks (its slot held; send releases it). A replica that raises
    ReplicaFailed is marked down and the request goes to one it has not tried. When all failed: a lone server's own
    error, else one naming `what` (the endpoint) and each replica's reason, scrubbed."""
    tried: set[str] = set()
    failures: list[RemoteModelError] = []
    while True:
        if cancel is not None and cancel.is_set():
            raise CancelledError("generation stopped")
        replica = replicas.acquire(tried, cancel)
        if replica is None:
            if len(failures) == 1:
                raise failures[0]
            reasons = "; ".join(f"({i}) {f}" for i, f in enumerate(failures, start=1))
            raise RemoteModelError(scrub(f"{what}: all {len(failures)} replicas failed: {reasons}"))
        tried.add(replica.url)
        sent_at = time.monotonic()
        try:
            result = send(replica)
        except ReplicaFailed as failed:
            replicas.mark_down(replica, scrub(str(failed.error)))
            failures.append(failed.error)
            continue
        replicas.mark_up(replica, sent_at)
        return result


_sets: dict[tuple, ReplicaSet] = {}
_clients: dict[tuple, object] = {}
_lock = threading.Lock()


def replica_set(endpoint: Endpoint) -> ReplicaSet:
    """The process-wide replica set of an endpoint (a named endpoint's own, keyed by its name, servers and limit)."""
    ident = (endpoint.name, endpoint.replicas, endpoint.max_concurrency)
    with _lock:
        found = _sets.get(ident)
        if found is None:
            found = _sets[ident] = ReplicaSet(endpoint.name, endpoint.replicas, endpoint.max_concurrency)
        return found


def http_client(endpoint: Endpoint, url: str, key: str | None):
    """The process-wide httpx client (connection pool) for one server of an endpoint, with the key's header."""
    import httpx

    ident = (url, hashlib.sha256((key or "").encode()).hexdigest(), endpoint.timeout_s, endpoint.max_concurrency)
    with _lock:
        client = _clients.get(ident)
        if client is None:
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            client = httpx.Client(base_url=url + "/", headers=headers,
                                  timeout=httpx.Timeout(endpoint.timeout_s, connect=min(10.0, endpoint.timeout_s)),
                                  limits=httpx.Limits(max_connections=max(endpoint.max_concurrency, 1) + 2))
            _clients[ident] = client
        return client
