"""Fair, bounded scheduling of the full password checks, so failed-login floods cannot starve real logins.

Strategy: a PBKDF2 check costs tens of milliseconds of CPU on purpose, so the broker runs only `workers`
of them at a time (on threads the server provides through `runner`), and the others wait here, queued
per source address (an IPv4 address, or an IPv6 /64: one machine's worth).
- Sources are served round-robin: a flood from one address gets one turn per round like any other
  address, so a login from elsewhere waits for at most the checks already running plus one round.
  But a source whose failure budget (below) is whole goes before those in the round whose budget is not:
  a client without a failed login lately (a first login, a service reconnecting) waits only for the
  checks running and those of other such sources, while a flood's budget stops being whole at its first
  failed check. The budget refills with time, not with turns, so a source that failed lately waits at
  most until it is whole again, then has its turn in the round like the others: none is starved.
- Each source has a budget of worker time for checks that fail (`failure_share` of a worker, up to
  `failure_burst` seconds at once): a source that spent it is skipped until it refills, so a guessing
  flood keeps a worker busy only that share of the time (a login from elsewhere seldom finds it taken)
  and its guesses come slowly. Time rather than a count, so the budget means the same on a slow
  machine or for a costlier hash.
- Within a source, the user name with the fewest checks waiting goes first (the oldest of its checks),
  and over a bound the oldest check of the name with the most is pushed out: a flood guessing one
  user's password from an address delays and displaces its own guesses, not another user logging in
  from the same address. A source holds at most `per_source` waiting checks and all sources `total`
  (over `total`, the source with the most gives one up). A check pushed out is answered as refused
  without a check (`None`): its client learns no more than from any failed login.
- Identical credentials checked against the same stored hash share one check (the caller gives a keyed
  digest as key), so a client reconnecting many times at once costs one PBKDF2.
AMQP connections and the management API's basic auth submit here alike (through `Authenticator.submit`),
so one pool serves both and an address's AMQP and HTTP attempts share one queue and one failure budget.
Nothing here depends on whether the user exists (an unknown user's check fails like a wrong password),
so neither the order, the budget nor the refusals tell the names. Everything but the work itself runs
on the event loop.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from typing import Final, Protocol

from ottermq.broker.transport import Cancellable

log: Final = logging.getLogger("ottermq.broker")

# done(True | False) after a check, done(None) when refused without one.
Done = Callable[[bool | None], None]

# Half the cores, at least one: hashing never takes the core the event loop needs.
CHECK_WORKERS: Final = max(1, (os.cpu_count() or 2) // 2)
# Waiting checks per source address: room for a host's clients all reconnecting at once after a restart
# (identical credentials share a check), while a flood from one address cannot queue more than this.
CHECKS_PER_SOURCE: Final = 32
# Waiting checks in all: at ~30 ms a check, the last one waits a few seconds, within the handshake timeout.
CHECKS_TOTAL: Final = 256
# Worker time a source may spend on checks that fail, as a share of one worker, and at once (seconds): at
# ~30 ms a check, several failed logins a second and ~30 in a row, plenty for typing errors and retrying
# clients, while a flood from one address leaves the worker free three quarters of the time.
FAILURE_SHARE: Final = 0.25
FAILURE_BURST: Final = 1.0
# The least a failed check costs a source's budget (seconds): what a PBKDF2 check takes. A hash in
# RabbitMQ's format (one salted SHA-256, what new passwords get) is checked in microseconds, and guesses
# against it must still come as slowly as against a PBKDF2 hash.
MIN_FAILURE_CHARGE: Final = 0.03
# Seconds before a login refused unchecked is answered (the connection waits on a timer, at no cost): a
# flood that reconnects when refused then cycles at most this often per client (RabbitMQ waits 3 s
# before closing a failed handshake).
UNCHECKED_REFUSAL_DELAY: Final = 2.0
# Checks refused unchecked are logged as one summary line at most this often (seconds).
SHED_LOG_INTERVAL: Final = 10.0
# Failure budgets are forgotten once refilled; the table is swept when it grows past this.
_BUDGET_SWEEP: Final = 1024


class Runner(Protocol):
    """What the scheduler needs from the server: worker threads and a timer, both reporting on the loop."""

    def run(self, work: Callable[[], bool], finished: Callable[[bool], None]) -> None:
        """Run `work` off the event loop, then always `finished(result)` on it (False if `work` raised)."""

    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable:
        """Run `callback` after `delay` seconds on the event loop."""


def source_of(peer_host: str) -> str:
    """The address a check is accounted to: the IPv4 address (also when IPv4-mapped), an IPv6 /64."""
    try:
        address = ipaddress.ip_address(peer_host.split("%", 1)[0])
    except ValueError:
        return peer_host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class Check:
    """One password check: its work and the callers waiting for its answer."""

    __slots__ = ("key", "source", "username", "waiters", "work")

    def __init__(self, source: str, username: str, key: bytes, work: Callable[[], bool]) -> None:
        self.source = source
        self.username = username
        self.key = key
        self.work = work
        self.waiters: list[Done] = []


class Ticket:
    """A caller's place in a check: `CheckScheduler.cancel(ticket)` when it no longer wants the answer."""

    __slots__ = ("check", "done")

    def __init__(self, check: Check, done: Done) -> None:
        self.check = check
        self.done = done


class CheckScheduler:
    """Runs password checks `workers` at a time, round-robin over source addresses, with bounded queues
    and a failure budget per source."""

    __slots__ = (
        "_active",
        "_budgets",
        "_by_key",
        "_clock",
        "_queued",
        "_queues",
        "_running",
        "_shed_count",
        "_shed_logged",
        "_sweep_at",
        "_wakeup",
        "failure_burst",
        "failure_share",
        "min_failure_charge",
        "per_source",
        "runner",
        "total",
        "workers",
    )

    def __init__(
        self,
        workers: int = CHECK_WORKERS,
        per_source: int = CHECKS_PER_SOURCE,
        total: int = CHECKS_TOTAL,
        failure_share: float = FAILURE_SHARE,
        failure_burst: float = FAILURE_BURST,
        clock: Callable[[], float] = time.monotonic,
        min_failure_charge: float = 0.0,
    ) -> None:
        # None: no worker threads (a broker without a server), checks run inline at once.
        self.runner: Runner | None = None
        self.workers = workers
        self.per_source = per_source
        self.total = total
        self.failure_share = failure_share
        self.failure_burst = failure_burst
        self.min_failure_charge = min_failure_charge
        self._clock = clock
        # Waiting checks by source, in round-robin order (a served source moves to the end).
        self._queues: dict[str, deque[Check]] = {}
        self._queued = 0
        self._running = 0
        # Running checks by source.
        self._active: dict[str, int] = {}
        # Waiting and running checks by credentials key, to share them.
        self._by_key: dict[bytes, Check] = {}
        # source -> (seconds of failed checks it may still spend, when counted); absent: a full budget.
        self._budgets: dict[str, tuple[float, float]] = {}
        self._sweep_at = _BUDGET_SWEEP
        self._wakeup: Cancellable | None = None
        # Checks refused unchecked since the last summary line, and when that was.
        self._shed_count = 0
        self._shed_logged = -SHED_LOG_INTERVAL

    @property
    def queued(self) -> int:
        """Checks waiting for a worker."""
        return self._queued

    @property
    def running(self) -> int:
        """Checks running now."""
        return self._running

    def budget(self, source: str) -> float:
        """The seconds of failed checks `source` may still spend now (its checks wait while <= 0)."""
        entry = self._budgets.get(source)
        if entry is None:
            return self.failure_burst
        left, stamp = entry
        return min(self.failure_burst, left + (self._clock() - stamp) * self.failure_share)

    def submit(self, source: str, username: str, key: bytes, work: Callable[[], bool], done: Done) -> Ticket:
        """Have `work` run (or join the same key's check); `done(answer)` later on the event loop, or at
        once without a runner. With a runner, the submitter's own `done` is never called from inside
        `submit` (another caller's may be: the check pushed out)."""
        check = self._by_key.get(key)
        if check is None:
            check = Check(source, username, key, work)
            self._by_key[key] = check
            check.waiters.append(done)
            if self.runner is None:
                self._run_inline(check)
            else:
                self._enqueue(check)
                self._start_next()
        else:
            check.waiters.append(done)
        return Ticket(check, done)

    def cancel(self, ticket: Ticket) -> None:
        """The caller left (its connection closed): forget it, and a waiting check nobody needs any more."""
        check = ticket.check
        try:
            check.waiters.remove(ticket.done)
        except ValueError:
            return  # answered already
        if check.waiters:
            return
        queue = self._queues.get(check.source)
        if queue is not None and check in queue:
            self._unqueue(queue, check)
            del self._by_key[check.key]

    # -- queues --------------------------------------------------------------------------------------------

    def _enqueue(self, check: Check) -> None:
        queue = self._queues.get(check.source)
        if queue is None:
            queue = self._queues[check.source] = deque()
        if len(queue) >= self.per_source:
            self._shed(queue, check.username)
        elif self._queued >= self.total:
            fullest = max(self._queues.values(), key=len)
            if len(queue) + 1 > len(fullest):
                self._shed(queue, check.username)
            else:
                self._shed(fullest, None)
        # Shedding may have emptied (and dropped) this source's queue: it rejoins at the end of the round.
        queue = self._queues.setdefault(check.source, queue)
        queue.append(check)
        self._queued += 1

    def _unqueue(self, queue: deque[Check], check: Check) -> None:
        queue.remove(check)
        self._queued -= 1
        if not queue:
            del self._queues[check.source]

    def _shed(self, queue: deque[Check], newcomer: str | None) -> None:
        """Refuse, unchecked, the oldest waiting check of the user name with the most checks in `queue`
        (counting the newcomer about to join it)."""
        counts = _counts(queue)
        if newcomer is not None and newcomer in counts:
            counts[newcomer] += 1
        most = max(counts.values())
        victim = next(check for check in queue if counts[check.username] == most)
        self._unqueue(queue, victim)
        self._shed_count += 1
        now = self._clock()
        if now - self._shed_logged >= SHED_LOG_INTERVAL:
            log.warning(
                "password checks refused unchecked: too many waiting",
                # count: since the last such line; source and user: of the latest one.
                extra={"count": self._shed_count, "source": victim.source, "user": victim.username},
            )
            self._shed_count = 0
            self._shed_logged = now
        self._answer(victim, None)

    # -- running -------------------------------------------------------------------------------------------

    def _start_next(self) -> None:
        runner = self.runner
        if runner is None:
            return
        while self._running < self.workers and self._queues:
            source = self._next_source()
            if source is None:
                self._wake_when_refilled(runner)
                return
            queue = self._queues.pop(source)
            counts = _counts(queue)
            fewest = min(counts.values())
            check = next(check for check in queue if counts[check.username] == fewest)
            queue.remove(check)
            self._queued -= 1
            if queue:
                self._queues[source] = queue  # to the end of the round
            self._running += 1
            self._active[source] = self._active.get(source, 0) + 1
            runner.run(self._paced(check.work), self._finisher(check, self._clock()))

    def _next_source(self) -> str | None:
        """The first source in the round with its failure budget whole, else the first with budget left,
        preferring one without a check running (one with a check running, or just finished, had its
        turn)."""
        idle = busy = None
        for source in self._queues:
            left = self.budget(source)
            if left > 0.0:
                if source not in self._active:
                    if left >= self.failure_burst:
                        return source
                    if idle is None:
                        idle = source
                elif busy is None:
                    busy = source
        return idle if idle is not None else busy

    def _wake_when_refilled(self, runner: Runner) -> None:
        """Every waiting source has spent its failure budget: look again when the first has some back."""
        if self._wakeup is not None:
            self._wakeup.cancel()
        short = min(-self.budget(source) for source in self._queues)
        self._wakeup = runner.call_later(max(short, 0.0) / self.failure_share + 0.001, self._wake)

    def _wake(self) -> None:
        self._wakeup = None
        self._start_next()

    def _paced(self, work: Callable[[], bool]) -> Callable[[], bool]:
        """`work` made to take at least `min_failure_charge` seconds when it fails (in its worker thread):
        a failed login then costs a worker what a PBKDF2 check costs, whatever the hash, so a flood of
        wrong passwords queues up and is shed as before, and a wrong password for an unknown user takes
        as long as one for a known user."""
        floor = self.min_failure_charge
        if floor <= 0.0:
            return work

        def paced() -> bool:
            started = time.monotonic()
            ok = work()
            if not ok:
                rest = floor - (time.monotonic() - started)
                if rest > 0.0:
                    time.sleep(rest)
            return ok

        return paced

    def _finisher(self, check: Check, started: float) -> Callable[[bool], None]:
        def finished(ok: bool) -> None:
            self._running -= 1
            try:
                if not ok:
                    self._charge(check.source, max(self._clock() - started, self.min_failure_charge))
                self._answer(check, ok)
            finally:
                try:
                    self._start_next()  # this source still counts as running: the others go first
                finally:
                    left = self._active.pop(check.source) - 1
                    if left:
                        self._active[check.source] = left

        return finished

    def _run_inline(self, check: Check) -> None:
        try:
            ok = check.work()
        except Exception:
            ok = False
        self._answer(check, ok)

    def _charge(self, source: str, seconds: float) -> None:
        """A check from `source` failed after `seconds`: off its budget (below zero, it waits longer)."""
        self._budgets[source] = (self.budget(source) - seconds, self._clock())
        if len(self._budgets) > self._sweep_at:
            full = [s for s in self._budgets if self.budget(s) >= self.failure_burst]
            for s in full:
                del self._budgets[s]
            self._sweep_at = max(_BUDGET_SWEEP, 2 * len(self._budgets))

    def _answer(self, check: Check, ok: bool | None) -> None:
        if self._by_key.get(check.key) is check:
            del self._by_key[check.key]
        waiters, check.waiters = check.waiters, []
        for done in waiters:
            try:
                done(ok)
            except Exception:  # one caller's failure must not keep the answer from the others
                log.exception("internal error in a password check's caller")


def _counts(queue: deque[Check]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for check in queue:
        counts[check.username] = counts.get(check.username, 0) + 1
    return counts
