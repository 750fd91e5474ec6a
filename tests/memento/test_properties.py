"""Property tests: random streams (with their record times) survive reopen; any truncation of the last
segment keeps exactly the complete records before it; any single bit flip in a record is detected."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memento.errors import RecoveryRefused
from memento.log import Log
from memento.record import HEAD_SIZE, USER_FLAGS_MASK

from .helpers import crashed, flip, wal_files

SEG = 4096
PROFILE = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])

records = st.lists(
    st.tuples(st.integers(1, 0xEF), st.integers(0, USER_FLAGS_MASK), st.binary(max_size=700)),
    min_size=1,
    max_size=40,
)


@PROFILE
@given(
    stream=records,
    reopen_every=st.integers(1, 20),
    times=st.lists(st.integers(0, 2**64 - 1), min_size=40, max_size=40),
)
def test_random_streams_survive_reopen(
    stream: list[tuple[int, int, bytes]], reopen_every: int, times: list[int]
) -> None:
    now = [0]

    def clock() -> int:
        return now[0]

    with tempfile.TemporaryDirectory() as tmp:
        log = Log.open(tmp, segment_size=SEG, clock=clock)
        try:
            for i, (rtype, flags, payload) in enumerate(stream):
                now[0] = times[i]
                assert log.append(rtype, payload, flags) == i + 1
                if (i + 1) % reopen_every == 0:
                    log.close()
                    log = Log.open(tmp, segment_size=SEG, clock=clock)
        finally:
            log.close()
        with Log.open(tmp, segment_size=SEG, clock=clock) as log:
            got = [(r.type, r.flags, r.payload) for r in log.replay()]
            assert got == stream
            assert [r.time for r in log.replay()] == times[: len(stream)]
            assert log.recovery_report.status == "clean"
            assert all(log.read(r.position) == r for r in log.replay())


def write_stream(tmp: str, payloads: list[bytes]) -> list[tuple[int, int, int]]:
    """Write payloads; return (segment seq, start, end) of each record."""
    spans = []
    with Log.open(tmp, segment_size=SEG) as log:
        for payload in payloads:
            log.append(1, payload)
            pos = log.last_position
            spans.append((pos.segment, pos.offset, pos.offset + HEAD_SIZE + len(payload)))
    return spans


@PROFILE
@given(
    payloads=st.lists(st.binary(max_size=300), min_size=1, max_size=30),
    where=st.floats(0, 1),
    zero_fill=st.booleans(),
)
def test_any_truncation_of_the_last_segment_keeps_the_complete_records(
    payloads: list[bytes], where: float, zero_fill: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        spans = write_stream(tmp, payloads)
        crashed(Path(tmp))
        last = wal_files(Path(tmp))[-1]
        original = last.read_bytes()
        last_seq = spans[-1][0]
        first_in_last = min(i for i, s in enumerate(spans) if s[0] == last_seq)
        lo = spans[first_in_last][1]
        cut = lo + int(where * (spans[-1][2] - lo))
        if zero_fill:
            with open(last, "r+b") as f:
                f.seek(cut)
                f.write(bytes(len(original) - cut))
        else:
            os.truncate(last, cut)
        damaged = last.read_bytes()
        survivors = first_in_last + sum(
            1
            for seq, start, end in spans[first_in_last:]
            if seq == last_seq and end <= len(damaged) and damaged[start:end] == original[start:end]
        )
        with Log.open(tmp, segment_size=SEG) as log:
            assert [r.payload for r in log.replay()] == payloads[:survivors]
            assert log.recovery_report.status in ("clean", "repairable")
            assert log.append(1, b"next") == survivors + 1
        with Log.open(tmp, segment_size=SEG) as log:
            assert [r.payload for r in log.replay()] == [*payloads[:survivors], b"next"]
            assert log.recovery_report.status == "clean"


@PROFILE
@given(
    payloads=st.lists(st.binary(max_size=120), min_size=1, max_size=12),
    which=st.floats(0, 1),
    where=st.floats(0, 1),
    bit=st.integers(0, 7),
)
def test_any_single_bit_flip_is_detected(payloads: list[bytes], which: float, where: float, bit: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        spans = write_stream(tmp, payloads)
        index = min(int(which * len(spans)), len(spans) - 1)
        seq, start, end = spans[index]
        offset = start + min(int(where * (end - start)), end - start - 1)
        flip(wal_files(Path(tmp))[seq - 1], offset, bit)
        try:
            log = Log.open(tmp, segment_size=SEG)
        except RecoveryRefused:
            return
        with log:
            got = [r.payload for r in log.replay()]
            assert got == payloads[: len(got)], "a damaged record was accepted"
            assert len(got) <= index, "the flipped record was accepted"
            assert log.recovery_report.status == "repairable"


@PROFILE
@given(
    payloads=st.lists(st.binary(max_size=400), min_size=1, max_size=30),
    which=st.floats(0, 1),
    where=st.floats(0, 1),
    bit=st.integers(0, 7),
)
def test_any_bit_flip_in_any_segment_is_refused_or_a_torn_tail(
    payloads: list[bytes], which: float, where: float, bit: int
) -> None:
    """Flips anywhere in the written part of any segment (headers and seals included)."""
    with tempfile.TemporaryDirectory() as tmp:
        spans = write_stream(tmp, payloads)
        files = wal_files(Path(tmp))
        index = min(int(which * len(files)), len(files) - 1)
        ends = [max((end for seq, _s, end in spans if seq == i + 1), default=64) for i in range(len(files))]
        end = ends[index] + (20 if index < len(files) - 1 else 0)  # sealed segments end with a seal
        flip(files[index], min(int(where * end), end - 1), bit)
        try:
            log = Log.open(tmp, segment_size=SEG)
        except RecoveryRefused:
            return
        with log:
            got = [r.payload for r in log.replay()]
            assert got == payloads[: len(got)] and len(got) < len(payloads)
            assert index == len(files) - 1 and log.recovery_report.status == "repairable"
