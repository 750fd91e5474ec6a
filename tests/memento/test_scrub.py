"""memento.scrub.verify_sealed: one sealed segment checked with plain reads, every damaged span reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from memento.record import HEAD_SIZE, encode
from memento.scrub import DamagedSpan, verify_sealed
from memento.segment import HEADER_SIZE, segment_name
from tests.memento.helpers import flip, patch, segment_bytes

PAYLOADS = [b"%04d" % i * 50 for i in range(20)]  # 200 bytes each
RECORD = HEAD_SIZE + 200
SIZE = 8192


def _segment(tmp_path: Path, *, seal: bool = True, payloads: list[bytes] = PAYLOADS) -> Path:
    path = tmp_path / segment_name(1, 1)
    path.write_bytes(segment_bytes(1, 1, payloads, size=SIZE, seal=seal))
    return path


def _at(index: int) -> int:
    return HEADER_SIZE + index * RECORD


def test_a_clean_sealed_segment_verifies_and_every_byte_read_is_paced(tmp_path: Path) -> None:
    path = _segment(tmp_path)
    paced: list[int] = []
    check = verify_sealed(str(path), next_lsn=21, pace=paced.append, chunk=1000)
    assert check.damage == [] and check.records == 20
    assert sum(paced) == check.bytes_read and max(paced) <= 1000
    # Only the data is read (and the seal), not the zeros the file was preallocated with.
    assert check.bytes_read < _at(21) + 1000


def test_a_flipped_payload_byte_is_one_span_and_the_records_after_it_still_verify(tmp_path: Path) -> None:
    path = _segment(tmp_path)
    flip(path, _at(5) + HEAD_SIZE + 100)
    flip(path, _at(12) + HEAD_SIZE + 3)
    check = verify_sealed(str(path), next_lsn=21, chunk=512)
    assert check.damage == [
        DamagedSpan(_at(5), _at(6), 6, "record checksum mismatch"),
        DamagedSpan(_at(12), _at(13), 13, "record checksum mismatch"),
    ]
    assert check.records == 18


def test_a_wrong_lsn_a_missing_seal_and_a_seal_that_does_not_lead_to_the_next_segment(tmp_path: Path) -> None:
    path = _segment(tmp_path)
    patch(path, _at(3), encode(1, 0, 99, PAYLOADS[3]))
    assert [d.reason for d in verify_sealed(str(path)).damage] == ["record has LSN 99 where 4 was expected"]
    assert [d.reason for d in verify_sealed(str(_segment(tmp_path))).damage] == []
    assert verify_sealed(str(_segment(tmp_path)), next_lsn=30).damage[0].reason == (
        "seal says LSN 21; the next segment starts at 30"
    )
    unsealed = verify_sealed(str(_segment(tmp_path, seal=False)), next_lsn=21)
    assert unsealed.damage == [DamagedSpan(_at(20), SIZE, 21, "the segment ends without its seal")]


def test_a_bad_header_or_a_name_that_disagrees_with_it(tmp_path: Path) -> None:
    path = _segment(tmp_path)
    flip(path, 20)
    assert verify_sealed(str(path)).damage[0].reason == "segment header: header checksum mismatch"
    renamed = tmp_path / segment_name(2, 1)
    _segment(tmp_path).rename(renamed)
    assert "the name says seq 2" in verify_sealed(str(renamed)).damage[0].reason


def test_a_record_larger_than_a_chunk(tmp_path: Path) -> None:
    big = [b"a" * 5000, b"b" * 100]
    path = _segment(tmp_path, payloads=big)
    check = verify_sealed(str(path), next_lsn=3, chunk=256)
    assert check.damage == [] and check.records == 2
    flip(path, HEADER_SIZE + HEAD_SIZE + 4000)
    check = verify_sealed(str(path), next_lsn=3, chunk=256)
    assert [(d.offset, d.lsn) for d in check.damage] == [(HEADER_SIZE, 1)] and check.records == 1


def test_a_pace_that_raises_stops_the_check(tmp_path: Path) -> None:
    class Stop(Exception):
        pass

    def pace(_n: int) -> None:
        raise Stop

    with pytest.raises(Stop):
        verify_sealed(str(_segment(tmp_path)), pace=pace)
    with pytest.raises(FileNotFoundError):
        verify_sealed(str(tmp_path / "gone.wal"))
