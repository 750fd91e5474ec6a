"""The password-check scheduler as pure bookkeeping: a runner the test drives, a clock the test sets."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from ottermq.broker.checks import SHED_LOG_INTERVAL, CheckScheduler, source_of


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Timer:
    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Runner:
    """Worker threads that run only when the test says so; timers that fire when the clock passes them."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.running: list[tuple[Callable[[], bool], Callable[[bool], None]]] = []
        self.timers: list[Timer] = []

    def run(self, work: Callable[[], bool], finished: Callable[[bool], None]) -> None:
        self.running.append((work, finished))

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(self.clock.now + delay, callback)
        self.timers.append(timer)
        return timer

    def finish(self, seconds: float = 0.03) -> None:
        """The oldest running check ends after `seconds` of work."""
        work, finished = self.running.pop(0)
        self.clock.now += seconds
        finished(work())

    def advance(self, seconds: float) -> None:
        self.clock.now += seconds
        due = [t for t in self.timers if t.when <= self.clock.now and not t.cancelled]
        self.timers = [t for t in self.timers if t not in due]
        for timer in due:
            timer.callback()


class Log:
    """Checks whose work records its name, and the answers each caller got."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.answers: dict[str, bool | None] = {}

    def work(self, name: str, ok: bool) -> Callable[[], bool]:
        def run() -> bool:
            self.ran.append(name)
            return ok

        return run

    def done(self, name: str) -> Callable[[bool | None], None]:
        return lambda ok: self.answers.__setitem__(name, ok)


def scheduler(**kwargs: float) -> tuple[CheckScheduler, Runner, Log]:
    clock = Clock()
    checks = CheckScheduler(clock=clock, **kwargs)  # type: ignore[arg-type]
    runner = Runner(clock)
    checks.runner = runner
    return checks, runner, Log()


def submit(checks: CheckScheduler, log: Log, source: str, user: str, name: str, ok: bool = False) -> None:
    checks.submit(source, user, name.encode(), log.work(name, ok), log.done(name))


def test_sources_take_turns() -> None:
    checks, runner, log = scheduler(workers=1)
    for i in range(5):
        submit(checks, log, "10.0.0.1", "mallory", f"flood-{i}")
    submit(checks, log, "10.0.0.2", "alice", "alice", ok=True)
    assert len(runner.running) == 1 and checks.queued == 5
    runner.finish()  # flood-0 was already running
    runner.finish()
    assert log.ran == ["flood-0", "alice"]  # not behind flood-1..4
    assert log.answers["alice"] is True and log.answers["flood-0"] is False


def test_a_source_without_failures_goes_before_the_round_of_those_that_failed() -> None:
    checks, runner, log = scheduler(workers=1)
    for source in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        for i in range(2):
            submit(checks, log, source, "mallory", f"{source}-{i}")
    runner.finish()
    runner.finish()  # each flooding source has failed once now
    submit(checks, log, "10.0.0.9", "alice", "alice", ok=True)
    runner.finish()
    runner.finish()
    assert log.ran[3] == "alice"  # not after a round of the flood's sources
    assert log.answers["alice"] is True
    while runner.running:
        runner.finish()
    assert log.ran[4:] == ["10.0.0.1-1", "10.0.0.2-1", "10.0.0.3-1"]  # those take turns as before


def test_without_a_runner_a_check_runs_at_once() -> None:
    checks = CheckScheduler()
    log = Log()
    submit(checks, log, "10.0.0.1", "alice", "alice", ok=True)
    assert log.answers == {"alice": True} and checks.queued == 0 and checks.running == 0


def test_a_source_over_its_failure_budget_waits_while_others_run() -> None:
    checks, runner, log = scheduler(workers=1, failure_share=0.25, failure_burst=0.1)
    for i in range(4):
        submit(checks, log, "10.0.0.1", "mallory", f"flood-{i}")
    runner.finish(0.06)
    runner.finish(0.06)  # 0.12 s of failures: the budget of 0.1 s is spent (and a bit more)
    assert checks.budget("10.0.0.1") < 0
    assert runner.running == [] and checks.queued == 2
    assert [t for t in runner.timers if not t.cancelled]  # it will look again once refilled
    submit(checks, log, "10.0.0.2", "alice", "alice", ok=True)
    runner.finish()
    assert log.answers["alice"] is True
    # Successes cost nothing; the flood goes on once its budget is back (0.02 s owed / 0.25 = 0.08 s).
    runner.advance(0.1)
    assert len(runner.running) == 1
    runner.finish()
    assert log.ran == ["flood-0", "flood-1", "alice", "flood-2"]


def test_a_full_source_pushes_out_the_oldest_check_of_its_most_frequent_user() -> None:
    checks, runner, log = scheduler(workers=1, per_source=3)
    submit(checks, log, "10.0.0.1", "mallory", "running")
    submit(checks, log, "10.0.0.1", "mallory", "m1")
    submit(checks, log, "10.0.0.1", "alice", "alice", ok=True)
    submit(checks, log, "10.0.0.1", "mallory", "m2")
    assert checks.queued == 3
    submit(checks, log, "10.0.0.1", "mallory", "m3")
    assert log.answers == {"m1": None}  # refused unchecked; alice keeps her place
    submit(checks, log, "10.0.0.1", "mallory", "m4")
    assert log.answers == {"m1": None, "m2": None}
    # The user with the fewest checks waiting goes first.
    runner.finish()
    runner.finish()
    assert log.ran == ["running", "alice"] and log.answers["alice"] is True


def test_all_sources_are_bounded_together() -> None:
    checks, _, log = scheduler(workers=1, per_source=10, total=4)
    submit(checks, log, "10.0.0.9", "x", "running")
    for i in range(3):
        submit(checks, log, "10.0.0.1", "mallory", f"m{i}")
    submit(checks, log, "10.0.0.2", "alice", "alice")
    assert checks.queued == 4
    submit(checks, log, "10.0.0.3", "bob", "bob")  # over the total: the fullest source gives one up
    assert log.answers == {"m0": None} and checks.queued == 4


def test_identical_credentials_share_one_check() -> None:
    checks, runner, log = scheduler(workers=1)
    submit(checks, log, "10.0.0.9", "x", "running")
    for name in ("a", "b", "c"):
        checks.submit("10.0.0.1", "alice", b"same", log.work(name, True), log.done(name))
    assert checks.queued == 1
    runner.finish()
    runner.finish()
    assert log.ran == ["running", "a"] and log.answers == {"running": False, "a": True, "b": True, "c": True}


def test_a_cancelled_check_nobody_waits_for_is_dropped() -> None:
    checks, runner, log = scheduler(workers=1)
    submit(checks, log, "10.0.0.9", "x", "running")
    ticket = checks.submit("10.0.0.1", "alice", b"k", log.work("a", True), log.done("a"))
    shared = checks.submit("10.0.0.1", "alice", b"k", log.work("b", True), log.done("b"))
    checks.cancel(ticket)
    assert checks.queued == 1  # b still waits for it
    checks.cancel(shared)
    checks.cancel(shared)  # twice is harmless
    assert checks.queued == 0
    runner.finish()
    assert log.ran == ["running"] and "a" not in log.answers and "b" not in log.answers


def test_a_failing_caller_does_not_keep_the_answer_from_the_others() -> None:
    checks, runner, log = scheduler(workers=1)

    def broken(ok: bool | None) -> None:
        raise RuntimeError("boom")

    checks.submit("10.0.0.1", "alice", b"k", log.work("a", True), broken)
    checks.submit("10.0.0.1", "alice", b"k", log.work("b", True), log.done("b"))
    runner.finish()
    assert log.answers == {"b": True} and checks.running == 0


def test_sources() -> None:
    assert source_of("10.1.2.3") == "10.1.2.3"
    assert source_of("::ffff:10.1.2.3") == "10.1.2.3"
    assert source_of("2001:db8::1") == source_of("2001:db8::ffff:1") == "2001:db8::/64"
    assert source_of("fe80::1%eth0") == "fe80::/64"
    assert source_of("localhost") == "localhost"


def test_checks_refused_unchecked_are_summed_up_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    checks, runner, log = scheduler(workers=1, per_source=1)
    with caplog.at_level(logging.WARNING, logger="ottermq.broker"):
        for i in range(20):
            submit(checks, log, "10.0.0.1", "mallory", f"m{i}")
        runner.clock.now += SHED_LOG_INTERVAL
        submit(checks, log, "10.0.0.1", "mallory", "late")
    assert sum(answer is None for answer in log.answers.values()) == 19
    lines = [r for r in caplog.records if "refused unchecked" in r.getMessage()]
    assert len(lines) == 2 and lines[1].__dict__["count"] == 18
