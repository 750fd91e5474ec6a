"""Recovery classification, one damage kind per test, as pure functions over segment bytes."""

from __future__ import annotations

import struct

from memento.record import HEAD_SIZE, encode
from memento.recovery import ACCEPTED, CLEAN, REFUSED, REPAIRABLE, UNSUPPORTED, BadRecord, Cut, classify
from memento.scan import SegmentScan, scan_segment
from memento.segment import FORMAT_VERSION, HEADER_SIZE, encode_header, segment_name

from .helpers import segment_bytes

PAYLOADS = [b"alpha", b"bravo" * 3, b"charlie" * 5, b"delta"]
OFFSETS = [HEADER_SIZE]
for _p in PAYLOADS:
    OFFSETS.append(OFFSETS[-1] + HEAD_SIZE + len(_p))
END = OFFSETS[-1]


def scan(data: bytes, seq: int = 1, base: int = 1, registry: frozenset[int] | None = None) -> SegmentScan:
    return scan_segment(segment_name(seq, base), data, registry)


def damaged(offset: int, replacement: bytes) -> bytes:
    data = bytearray(segment_bytes(1, 1, PAYLOADS))
    data[offset : offset + len(replacement)] = replacement
    return bytes(data)


def test_clean_segment() -> None:
    s = scan(segment_bytes(1, 1, PAYLOADS))
    assert (s.count, s.last_lsn, s.data_end, s.damage) == (4, 4, END, None)
    verdict = classify([s], 0)
    assert (verdict.status, verdict.cut, verdict.end_lsn, verdict.next_lsn) == (CLEAN, None, 4, 5)


def test_empty_log_and_empty_segment() -> None:
    assert classify([], 0).status == CLEAN
    assert classify([], 7).next_lsn == 8
    verdict = classify([scan(segment_bytes(1, 1, []))], 0)
    assert (verdict.status, verdict.end_lsn) == (CLEAN, 0)


def test_torn_tail_cut_inside_length() -> None:
    data = damaged(OFFSETS[3], b"\x11\x00")[: OFFSETS[3] + 2]  # file ends two bytes into the len word
    s = scan(data)
    assert s.damage is not None and s.damage.offset == OFFSETS[3] and s.damage.lsn == 4
    verdict = classify([s], 0)
    assert verdict.status == REPAIRABLE
    assert verdict.cut == Cut(0, OFFSETS[3]) and verdict.end_lsn == 3
    assert verdict.findings[0].kind == "torn-tail"


def test_torn_tail_cut_inside_crc_then_zeros() -> None:
    data = damaged(OFFSETS[3] + 4, bytes(HEAD_SIZE + 5 - 4))
    verdict = classify([scan(data)], 0)
    assert verdict.status == REPAIRABLE and verdict.end_lsn == 3


def test_torn_tail_length_past_end() -> None:
    data = damaged(OFFSETS[3], struct.pack("<I", 10_000_000))
    s = scan(data)
    assert s.damage is not None and "past the end" in s.damage.reason
    assert classify([s], 0).status == REPAIRABLE


def test_torn_tail_bad_crc_then_zeros() -> None:
    data = damaged(OFFSETS[3] + 21, b"X")
    s = scan(data)
    assert s.damage is not None and "checksum" in s.damage.reason and s.resync is None
    assert classify([s], 0).status == REPAIRABLE


def test_torn_tail_zeroed_sector_at_end() -> None:
    data = damaged(OFFSETS[2] + 3, bytes(END - OFFSETS[2] - 3))
    verdict = classify([scan(data)], 0)
    assert verdict.status == REPAIRABLE and verdict.end_lsn == 2


def test_zeros_then_stale_junk_with_lower_lsns_is_torn_tail() -> None:
    data = bytearray(segment_bytes(1, 1, PAYLOADS, size=8192))
    data[OFFSETS[3] : END] = bytes(END - OFFSETS[3])  # last record lost ...
    stale = encode(1, 0, 2, b"old junk") + encode(1, 0, 3, b"older junk")
    data[END + 100 : END + 100 + len(stale)] = stale  # ... and stale records with lower LSNs further on
    s = scan(bytes(data))
    assert s.damage is not None and s.resync is None
    verdict = classify([s], 0)
    assert verdict.status == REPAIRABLE and verdict.end_lsn == 3


def test_junk_with_far_future_lsn_is_torn_tail() -> None:
    data = bytearray(segment_bytes(1, 1, PAYLOADS, size=8192))
    data[END + 8 : END + 8 + 30] = encode(1, 0, 10**12, b"x" * 10)
    data[OFFSETS[3] + 21] ^= 1
    assert classify([scan(bytes(data))], 0).status == REPAIRABLE


def test_bad_crc_followed_by_valid_records_is_refused() -> None:
    data = damaged(OFFSETS[1] + 22, b"!")
    s = scan(data)
    assert s.resync is not None and s.resync.lsn == 3 and s.resync.offset == OFFSETS[2]
    verdict = classify([s], 0)
    assert verdict.status == REFUSED
    finding = verdict.findings[0]
    assert (finding.kind, finding.offset, finding.lsn) == ("corrupt-record", OFFSETS[1], 2)
    assert segment_name(1, 1) in finding.message and f"offset {OFFSETS[1]}" in finding.message
    assert verdict.cut == Cut(0, OFFSETS[1]) and verdict.end_lsn == 1


def test_damaged_length_followed_by_valid_records_is_refused() -> None:
    data = damaged(OFFSETS[1], struct.pack("<I", 13))
    assert classify([scan(data)], 0).status == REFUSED


def test_zeroed_span_before_valid_records_is_refused() -> None:
    data = damaged(OFFSETS[1], bytes(OFFSETS[2] - OFFSETS[1]))
    s = scan(data)
    assert s.damage is not None and s.resync is not None
    assert classify([s], 0).status == REFUSED


def test_lsn_out_of_sequence_inside_segment() -> None:
    data = bytearray(segment_bytes(1, 1, PAYLOADS[:2]))
    data[OFFSETS[2] : OFFSETS[2] + 30] = encode(1, 0, 9, b"x" * 10)
    s = scan(bytes(data))
    assert s.damage is not None and "LSN 9" in s.damage.reason
    assert classify([s], 0).status == REPAIRABLE  # junk at the end, nothing valid after it


def test_damage_in_sealed_segment_is_refused() -> None:
    first = bytearray(segment_bytes(1, 1, PAYLOADS, seal=True))
    first[OFFSETS[3] + 21] ^= 4  # last record of a sealed segment: nothing after it inside the file
    second = segment_bytes(2, 6, [b"next"])
    verdict = classify([scan(bytes(first)), scan(second, 2, 5)], 0)
    assert verdict.status == REFUSED and verdict.findings[0].kind in ("corrupt-sealed", "corrupt-record")


def test_sealed_segments_chain() -> None:
    first = segment_bytes(1, 1, PAYLOADS, seal=True)
    second = segment_bytes(2, 5, [b"next"])
    verdict = classify([scan(first), scan(second, 2, 5)], 0)
    assert (verdict.status, verdict.end_lsn) == (CLEAN, 5)


def test_unsealed_segment_before_another_is_refused() -> None:
    first = segment_bytes(1, 1, PAYLOADS)
    second = segment_bytes(2, 5, [b"next"])
    assert classify([scan(first), scan(second, 2, 5)], 0).findings[0].kind == "unsealed"


def test_lsn_gap_between_segments() -> None:
    first = segment_bytes(1, 1, PAYLOADS, seal=True)
    second = segment_bytes(2, 7, [b"next"])
    verdict = classify([scan(first), scan(second, 2, 7)], 0)
    assert verdict.status == REFUSED and verdict.findings[0].kind == "lsn-gap"
    assert verdict.cut == Cut(1, None) and verdict.end_lsn == 4


def test_missing_middle_segment() -> None:
    first = segment_bytes(1, 1, PAYLOADS, seal=True)
    third = segment_bytes(3, 5, [b"next"])
    verdict = classify([scan(first), scan(third, 3, 5)], 0)
    assert verdict.findings[0].kind == "missing-segment" and verdict.status == REFUSED


def test_bad_header_is_refused() -> None:
    data = bytearray(segment_bytes(1, 1, PAYLOADS))
    data[20] ^= 1
    verdict = classify([scan(bytes(data))], 0)
    assert verdict.findings[0].kind == "bad-header" and verdict.status == REFUSED


def test_header_disagreeing_with_name_is_refused() -> None:
    assert classify([scan(segment_bytes(1, 1, PAYLOADS), 1, 2)], 0).findings[0].kind == "bad-header"


def test_future_version_is_unsupported() -> None:
    data = encode_header(1, 1, 4096, version=FORMAT_VERSION + 1).ljust(4096, b"\0")
    verdict = classify([scan(data)], 0)
    assert verdict.status == UNSUPPORTED and verdict.findings[0].kind == "unsupported-version"


def test_unknown_record_type_is_unsupported() -> None:
    data = segment_bytes(1, 1, PAYLOADS, rtype=9)
    assert classify([scan(data, registry=frozenset({1}))], 0).status == UNSUPPORTED
    assert classify([scan(data, registry=frozenset({9}))], 0).status == CLEAN
    assert classify([scan(data)], 0).status == CLEAN


def test_snapshot_beyond_end_of_log() -> None:
    verdict = classify([scan(segment_bytes(1, 1, PAYLOADS))], 10)
    assert verdict.status == REFUSED and verdict.findings[-1].kind == "snapshot-beyond-log"
    # Salvage keeps the segment (the snapshot's queues may point into it) and continues after the
    # snapshot; the bodies of records lost past its end are to be checked.
    assert verdict.cut is None and verdict.next_lsn == 11 and verdict.damaged == {1: END}


def test_log_starting_after_snapshot() -> None:
    verdict = classify([scan(segment_bytes(1, 5, PAYLOADS), 1, 5)], 2)
    assert verdict.status == REFUSED and verdict.findings[-1].kind == "log-after-snapshot"
    assert classify([scan(segment_bytes(1, 5, PAYLOADS), 1, 5)], 4).status == CLEAN


def test_segments_covered_by_snapshot_are_only_header_checked() -> None:
    first = scan_segment(
        segment_name(1, 1), segment_bytes(1, 1, PAYLOADS, seal=True)[:HEADER_SIZE], headers_only=True
    )
    second = scan(segment_bytes(2, 5, [b"next"]), 2, 5)
    verdict = classify([first, second], 4)
    assert (verdict.status, verdict.end_lsn) == (CLEAN, 5)


# -- damage the snapshot covers: refused, but never a cut (salvage keeps the segments in place) -----------


def _three_sealed() -> list[bytes]:
    return [
        segment_bytes(1, 1, PAYLOADS, seal=True),
        segment_bytes(2, 5, PAYLOADS, seal=True),
        segment_bytes(3, 9, [b"tail"]),
    ]


def test_a_bad_header_in_a_covered_segment_sets_no_cut() -> None:
    first, second, third = _three_sealed()
    broken = bytearray(second)
    broken[20] ^= 1
    scans = [scan(first), scan(bytes(broken), 2, 5), scan(third, 3, 9)]
    verdict = classify(scans, 8)  # the snapshot covers segments 1 and 2
    assert verdict.status == REFUSED and verdict.findings[0].kind == "bad-header"
    assert verdict.findings[0].covered and verdict.cut is None
    assert (verdict.end_lsn, verdict.next_lsn, verdict.damaged) == (9, 10, {2: HEADER_SIZE})
    # Not covered (the snapshot is older): the log is cut there, as before.
    old = classify(scans, 3)
    assert old.cut == Cut(1, None) and not old.findings[0].covered and old.damaged == {}


def test_record_damage_in_a_covered_segment_marks_bodies_from_the_damage_on() -> None:
    first, second, third = _three_sealed()
    broken = bytearray(second)
    broken[OFFSETS[1] + 21] ^= 4  # the second record of segment 2 (LSN 6)
    verdict = classify([scan(first), scan(bytes(broken), 2, 5), scan(third, 3, 9)], 8)
    assert verdict.cut is None and verdict.damaged == {2: OFFSETS[1]}
    assert verdict.findings[0].lsn == 6 and verdict.end_lsn == 9


def test_missing_covered_segments_mark_their_seqs() -> None:
    first, _second, third = _three_sealed()
    verdict = classify([scan(first), scan(third, 3, 9)], 8)
    assert verdict.findings[0].kind == "missing-segment" and verdict.cut is None
    assert verdict.damaged == {2: HEADER_SIZE} and verdict.end_lsn == 9
    # Records after the snapshot in them: the log is cut, as before.
    assert classify([scan(first), scan(third, 3, 9)], 4).cut == Cut(1, None)


def test_accepted_covered_damage_is_not_refused_again() -> None:
    first, second, third = _three_sealed()
    broken = bytearray(second)
    broken[20] ^= 1
    scans = [scan(first), scan(bytes(broken), 2, 5), scan(third, 3, 9)]
    key = classify(scans, 8).findings[0].key
    verdict = classify(scans, 8, accepted={key})
    assert verdict.status == CLEAN and verdict.findings[0].severity == ACCEPTED
    assert verdict.damaged == {2: HEADER_SIZE}  # still checked: its bodies may be unreadable
    assert classify(scans, 8, accepted={("other", "bad-header", 0)}).status == REFUSED


def test_a_bad_record_is_cut_at_like_damage() -> None:
    first, second, third = _three_sealed()
    scans = [scan(first), scan(second, 2, 5), scan(third, 3, 9)]
    verdict = classify(scans, 4, bad_record=BadRecord(2, OFFSETS[2], 7, "CodecError: nonsense"))
    assert verdict.status == REFUSED and verdict.findings[0].kind == "bad-record"
    assert verdict.cut == Cut(1, OFFSETS[2], 7) and verdict.end_lsn == 6 and verdict.next_lsn == 7
    assert "LSN 7" in verdict.findings[0].message and "nonsense" in verdict.findings[0].message
