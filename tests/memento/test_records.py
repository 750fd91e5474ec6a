"""memento.records and `memento dump` on plain Memento logs: times, selection, following a tail across
rollovers, and files recovery moved to quarantine."""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from memento.cli import app
from memento.inspect_decoders import RecordView
from memento.log import QUARANTINE_DIR, Log
from memento.record import Record, RecordPosition
from memento.records import BadSelection, IsoClock, Lister, Printer, Selection, Tail, parse_when
from tests.memento.helpers import wal_files

SEGMENT = 4096
NOW = 1_800_000_000_000_000  # 2027-01-15T08:00:00Z in microseconds


def run(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def test_times_parse_absolute_and_relative() -> None:
    def last() -> int | None:
        return NOW

    assert parse_when("2027-01-15T08:00:00Z", now_us=0, last_us=last) == NOW
    assert parse_when("2027-01-15T08:00:00", now_us=0, last_us=last) == NOW  # UTC when no offset
    assert parse_when("2027-01-15T10:00:00+02:00", now_us=0, last_us=last) == NOW
    assert parse_when("10s", now_us=0, last_us=last) == NOW - 10_000_000  # before the last record
    assert parse_when("5m", now_us=0, last_us=last) == NOW - 300_000_000
    assert parse_when("now-2h", now_us=NOW, last_us=lambda: None) == NOW - 7_200_000_000
    assert parse_when("250ms", now_us=0, last_us=last) == NOW - 250_000
    with pytest.raises(BadSelection, match="no record of the log has a time"):
        parse_when("10s", now_us=NOW, last_us=lambda: None)
    with pytest.raises(BadSelection, match="ISO 8601"):
        parse_when("yesterday", now_us=NOW, last_us=last)
    assert IsoClock()(NOW + 123_456) == "2027-01-15T08:00:00.123Z"


def _record(lsn: int, time: int = 0) -> Record:
    return Record(lsn, 1, 0, b"payload %d" % lsn, RecordPosition(1, 64 * lsn), time)


def _describe(record: RecordView) -> dict[str, Any]:
    desc: dict[str, Any] = {"type": "thing", "queues": ["q"], "body": record.payload}
    if record.lsn == 2:
        desc["time_us"] = NOW - 1_000_000  # a time only the payload knows
    return desc


def test_a_record_time_wins_the_payload_time_is_a_fallback_and_untimed_records_are_counted() -> None:
    out = io.StringIO()
    selection = Selection(since_us=NOW - 5_000_000)
    lister = Lister(Printer(out, as_json=True, decode=True, payload=True), selection, _describe)
    for record in (_record(1, NOW), _record(2), _record(3), _record(4), _record(5, NOW - 60_000_000)):
        lister.feed(record)
    shown = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["lsn"], r["time"]) for r in shown] == [
        (1, "2027-01-15T08:00:00.000Z"),
        (2, "2027-01-15T07:59:59.000Z"),
    ]
    assert shown[0]["body"] == "payload 1" and shown[0]["type"] == "thing"
    assert selection.untimed == 2
    assert selection.untimed_note() is not None and "LSN 3..4" in (selection.untimed_note() or "")


_ODD: dict[str, Any] = {
    "name": "caf\u00e9 \U0001f600",  # non-ASCII: escaped, listings are ASCII
    "big": 2**70,  # beyond 64 bits
    "keys": {1: "int key", "s": None},  # a key that is not a string
    "when": datetime(2027, 1, 15, 8, 0, tzinfo=UTC),  # not JSON: shown as text
    "raw": b"\x00",
    "ratio": 0.25,
    "tiny": 1e-7,
}


def _odd(record: RecordView) -> dict[str, Any]:
    return {"type": "odd", **_ODD, "n": record.lsn}


def _odd_split(record: RecordView) -> tuple[dict[str, Any], dict[str, Any]]:
    return _ODD_HEAD, {**_ODD, "n": record.lsn}


_ODD_HEAD: dict[str, Any] = {"type": "odd"}


@pytest.mark.parametrize("split", [False, True])
def test_json_lines_read_back_as_what_the_decoder_described_whatever_its_values(split: bool) -> None:
    out = io.StringIO()
    printer = Printer(out, as_json=True, decode=True, payload=False)
    lister = Lister(printer, Selection(), _odd, _odd_split if split else None)
    for lsn in (1, 2):
        lister.feed(_record(lsn, NOW))
    printer.flush()
    text = out.getvalue()
    assert text.isascii()
    lines = [json.loads(line) for line in text.splitlines()]
    assert [line["n"] for line in lines] == [1, 2]
    for line in lines:
        assert (
            line["name"] == _ODD["name"]
            and line["big"] == 2**70
            and line["keys"] == {"1": "int key", "s": None}
        )
        assert line["when"] == str(_ODD["when"]) and line["raw"] == str(b"\x00")
        assert line["ratio"] == 0.25 and line["tiny"] == 1e-7
    # JSON has no NaN: a float that is not a number is null (the standard encoder's NaN is not JSON).
    nan = io.StringIO()
    Lister(
        Printer(nan, as_json=True, decode=True, payload=False), Selection(), lambda r: {"v": float("nan")}
    ).feed(_record(1))
    assert json.loads(nan.getvalue().splitlines()[0], parse_constant=pytest.fail)["v"] is None


def test_tail_follows_appends_across_rollovers(tmp_path: Path) -> None:
    with Log.open(tmp_path, segment_size=SEGMENT) as log:
        tail = Tail(tmp_path / "wal", 1, 64, 1, lambda message: None)
        seen: list[int] = []
        for round_ in range(5):
            for i in range(40):
                log.append(1, b"r%d-%d " % (round_, i) * 8)
            log.sync()
            seen.extend(r.lsn for r in tail.poll())
        assert tail.poll() == []
        tail.close()
    assert seen == list(range(1, 201))
    assert len(wal_files(tmp_path)) > 3


def test_tail_waits_on_a_record_being_written_then_warns(tmp_path: Path) -> None:
    with Log.open(tmp_path, segment_size=SEGMENT) as log:
        log.append(1, b"one")
        log.sync()
    segment = wal_files(tmp_path)[0]
    data = bytearray(segment.read_bytes())
    end = len(data.rstrip(b"\0"))
    data[end : end + 4] = (40).to_bytes(4, "little")  # the length word of a record not written yet
    segment.write_bytes(bytes(data))
    warnings: list[str] = []
    tail = Tail(tmp_path / "wal", 1, 64, 1, warnings.append)
    tail.STUCK_AFTER = 0.0  # type: ignore[misc]
    assert [r.lsn for r in tail.poll()] == [1]
    assert tail.poll() == [] and tail.poll() == []
    tail.close()
    assert warnings and "waiting for LSN 2" in warnings[0]


def test_dump_reads_what_recovery_quarantined(tmp_path: Path) -> None:
    with Log.open(tmp_path, segment_size=SEGMENT) as log:
        for i in range(30):
            log.append(2, b"record %d" % i)
        log.sync()
    segment = wal_files(tmp_path)[-1]
    data = bytearray(segment.read_bytes())
    end = len(data.rstrip(b"\0"))
    data[end - 2] ^= 0xFF  # the last record's payload: a torn tail
    segment.write_bytes(bytes(data))
    dumped = run("dump", "--json", "--decoder", "generic", str(segment))
    assert dumped.exit_code == 1 and "record checksum mismatch" in dumped.stderr
    damaged = re.search(r"stop parsing at offset (\d+)", dumped.stderr)
    assert damaged is not None
    with Log.open(tmp_path, segment_size=SEGMENT, salvage=True):
        pass  # recovery quarantines the torn tail (salvage: a log stopped cleanly expects its last record)
    (quarantined,) = (tmp_path / QUARANTINE_DIR).iterdir()
    result = run("dump", "--json", "--decoder", "generic", "--payload", str(quarantined))
    assert result.exit_code == 1, result.output
    assert result.stdout == ""  # the damaged record is all it holds
    offset = int(damaged.group(1))
    assert f"from offset {offset} (no header)" in result.stderr
    assert f"stop parsing at offset {offset}: record checksum mismatch" in result.stderr
    clean = run("dump", "--decoder", "generic", str(segment))
    assert clean.exit_code == 0 and "end of data (zeros)" in clean.stderr
    assert run("dump", str(tmp_path)).exit_code == 4


def test_verify_decoder_without_describe_is_bad_input(tmp_path: Path) -> None:
    with Log.open(tmp_path, segment_size=SEGMENT) as log:
        log.append(1, b"x")
    result = run("verify", "--decoder", "generic", str(tmp_path))
    assert result.exit_code == 4 and "no describe method" in result.stderr
