"""The record listings of the `memento` command line: `inspect --records` (also `--follow`) and `dump`.

Strategy: the command functions in memento/cli.py only parse options; the work is here, over the
streaming pieces of memento.records, so that what the CLI prints is one line per record as it is read.
Records go to stdout; every note (the log's verdict when it is not clean, where a dumped file stops
parsing, records that --since/--until could not place) goes to stderr, so stdout stays one record a line.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from memento.errors import CorruptRecord
from memento.inspect import EXIT_BAD_INPUT, WAL_DIR, Inspection, inspect_log, iter_records
from memento.inspect_decoders import DecoderError, describer, resolve, splitter, type_names
from memento.record import Record
from memento.records import (
    ENGINE_TYPE_NAMES,
    BadSelection,
    Describe,
    Lister,
    Printer,
    Selection,
    Split,
    Tail,
    described,
    file_info,
    last_time,
    parse,
    parse_when,
    tail_start,
    write_stderr,
)
from memento.recovery import REPAIRABLE
from memento.segment import HEADER_SIZE

DEFAULT_DECODER = "ottermq"
FOLLOW_INTERVAL = 0.2  # seconds between reads of a live log's tail when nothing new came

# -- options shared by `inspect --records` and `dump` (typer reads these annotations) ----------------------

DecodeOpt = Annotated[
    bool,
    typer.Option(
        "--decode",
        help="Show what each record means (exchange, routing key, queues, message-id, correlation-id, "
        "headers, body size; removals: queue, ids, reason; tx: the inner records).",
    ),
]
PayloadOpt = Annotated[
    bool, typer.Option("--payload", help="Also show the first 64 bytes of each body (or payload), escaped.")
]
DecoderOpt = Annotated[
    str | None,
    typer.Option(
        "--decoder",
        help=f"Decoder naming and describing records: a registered name or module:callable "
        f"(default: {DEFAULT_DECODER} when installed; 'generic' shows type numbers only).",
    ),
]
FromOpt = Annotated[int | None, typer.Option("--from-lsn", help="First LSN to list.")]
ToOpt = Annotated[int | None, typer.Option("--to-lsn", help="Last LSN to list.")]
_WHEN = (
    "ISO 8601 (UTC unless it has an offset, e.g. 2026-12-07T06:17:00Z), or a duration before the time "
    "of the log's LAST timed record ('10s', '5m', '2h', '1d', '500ms'), or before the current time "
    "('now-10s'). A record has the time it was appended (format version 3), else its publish time; "
    "records with neither cannot be placed: they are left out and counted on stderr."
)
SinceOpt = Annotated[str | None, typer.Option("--since", help=f"Only records at or after this time: {_WHEN}")]
UntilOpt = Annotated[
    str | None, typer.Option("--until", help="Only records at or before this time (as --since).")
]
TypeOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--type",
        help="Only records of this type: a number or a name (publish, queue.declared...); repeatable.",
    ),
]
QueueOpt = Annotated[
    list[str] | None,
    typer.Option("--queue", help="Only records touching this queue (tx: any inner record); repeatable."),
]
MessageIdOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--message-id",
        help="Only records of the message with this message-id: its publishes and, after them, the "
        "records removing it (ack, reject, expiry, dead-lettering...); repeatable.",
    ),
]
FollowOpt = Annotated[
    bool,
    typer.Option(
        "--follow", "-f", help="Keep listing records as they are appended (a running broker); Ctrl-C ends it."
    ),
]


@dataclass(slots=True)
class ListOptions:
    """What the listing options asked for."""

    as_json: bool = False
    decode: bool = False
    payload: bool = False
    decoder: str | None = None
    from_lsn: int | None = None
    to_lsn: int | None = None
    since: str | None = None
    until: str | None = None
    types: list[str] = field(default_factory=list)
    queues: list[str] = field(default_factory=list)
    message_ids: list[str] = field(default_factory=list)
    follow: bool = False


def pick_describe(spec: str | None) -> tuple[Describe | None, frozenset[str] | None, Split | None]:
    """The decoder's describe method, its type names and its describe_split method: of `spec`, else of
    the default decoder when installed."""
    try:
        factory = resolve(spec or DEFAULT_DECODER)
    except DecoderError:
        if spec is not None:
            raise
        return None, None, None
    decoder: Any = factory()
    describe = describer(decoder)
    if describe is None:
        return None, None, None
    return describe, type_names(decoder), splitter(decoder)


def selection_for(
    opts: ListOptions,
    describe: Describe | None,
    names: frozenset[str] | None,
    last_us: Callable[[], int | None],
) -> Selection:
    """The filters, checked: BadSelection names the option that cannot work and why."""
    codes: set[int] = set()
    wanted: set[str] = set()
    for value in opts.types:
        try:
            codes.add(int(value, 0))
            continue
        except ValueError:
            pass
        engine = {name: code for code, name in ENGINE_TYPE_NAMES.items()}
        if value in engine:
            codes.add(engine[value])
        elif describe is None:
            raise BadSelection(f"--type {value}: type names come from a decoder, and none is in use")
        elif names is not None and value not in names:
            raise BadSelection(f"--type {value}: unknown type name (known: {', '.join(sorted(names))})")
        else:
            wanted.add(value)
    if describe is None and (opts.queues or opts.message_ids):
        raise BadSelection("--queue and --message-id read record contents: they need a decoder")
    now_us = time.time_ns() // 1000
    cache: list[int | None] = []

    def last() -> int | None:
        if not cache:
            cache.append(last_us())
        return cache[0]

    since = parse_when(opts.since, now_us=now_us, last_us=last) if opts.since else None
    until = parse_when(opts.until, now_us=now_us, last_us=last) if opts.until else None
    return Selection(
        from_lsn=opts.from_lsn or 0,
        to_lsn=opts.to_lsn,
        since_us=since,
        until_us=until,
        type_codes=frozenset(codes),
        type_names=frozenset(wanted),
        queues=frozenset(opts.queues),
        message_ids=frozenset(opts.message_ids),
    )


def _prepare(opts: ListOptions, last_us: Callable[[Describe | None], int | None]) -> tuple[Lister, Selection]:
    try:
        describe, names, split = pick_describe(opts.decoder)
    except DecoderError as exc:
        _fail(str(exc))
    if opts.decode and describe is None:
        _fail(f"--decode: decoder {opts.decoder or DEFAULT_DECODER!r} cannot describe records")
    try:
        selection = selection_for(opts, describe, names, lambda: last_us(describe))
    except BadSelection as exc:
        _fail(str(exc))
    printer = Printer(
        sys.stdout,
        as_json=opts.as_json,
        decode=opts.decode,
        payload=opts.payload,
        flush_each=opts.follow,
        batch=not opts.follow,
    )
    return Lister(printer, selection, describe, split), selection


def _fail(message: str) -> Any:
    typer.echo(f"memento: error: {message}", err=True)
    raise typer.Exit(EXIT_BAD_INPUT)


@contextlib.contextmanager
def _stoppable() -> Iterator[None]:
    """SIGTERM and SIGINT end a listing (as KeyboardInterrupt); a closed stdout (`| head`) ends it too."""

    def stop(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    # SIGINT too: a process started in the background by a shell inherits it ignored.
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _quiet_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so that the interpreter's final flush is silent."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def list_log_records(insp: Inspection, opts: ListOptions) -> int:
    """`inspect --records`: list the log's records (then follow its tail); the exit code."""
    if insp.exit_code and insp.partial:
        # Not clean: the verdict noted below must be the full one, as recovery would reach it.
        insp = inspect_log(insp.path, registry=insp.types, by_type=False)
    lister, selection = _prepare(opts, lambda describe: last_time(insp, describe))
    if insp.exit_code >= 2 and opts.follow:
        _fail(f"cannot follow a log that is {insp.status}; see memento inspect")
    if insp.exit_code:
        _verdict_note(insp)
    after = max(0, (opts.from_lsn or 1) - 1)
    code = insp.exit_code
    try:
        with _stoppable():
            try:
                for record in iter_records(insp, after, opts.to_lsn):
                    lister.feed(record)
            except CorruptRecord:
                # Damage in a segment the quick inspection only header-checked: the listing stops there,
                # as it would have after a full inspection, which now says what recovery would do.
                lister.printer.flush()
                full = inspect_log(insp.path, registry=insp.types, by_type=False)
                _verdict_note(full)
                return full.exit_code
            if opts.follow and (opts.to_lsn is None or lister.last_lsn < opts.to_lsn):
                code = 0
                _follow(insp, lister, opts.to_lsn, after)
    except KeyboardInterrupt:
        code = 0
    except BrokenPipeError:
        _quiet_stdout()
        return code
    try:
        lister.printer.flush()  # the records batched when the listing ended (also by Ctrl-C)
    except BrokenPipeError:
        _quiet_stdout()
        return code
    note = selection.untimed_note()
    if note:
        write_stderr(note)
    return code


def _verdict_note(insp: Inspection) -> None:
    why = next((f"{f.kind}: {f.message}" for f in insp.findings if f.severity != REPAIRABLE), None)
    why = why or next((f"{f.kind}: {f.message}" for f in insp.findings), insp.status)
    write_stderr(f"log is {insp.status} ({why}); records listed up to LSN {insp.end_lsn}")


def _follow(insp: Inspection, lister: Lister, to_lsn: int | None, after: int) -> None:
    start = tail_start(insp)
    # No segment yet: the first one is awaited, and its base LSN is not known before it exists.
    seq, offset, next_lsn = start if start is not None else (1, HEADER_SIZE, None)
    tail = Tail(insp.path / WAL_DIR, seq, offset, next_lsn, write_stderr)
    try:
        while True:
            records = tail.poll()
            for record in records:
                if record.lsn <= after:
                    continue
                if to_lsn is not None and record.lsn > to_lsn:
                    return
                lister.feed(record)
            if not records:
                time.sleep(FOLLOW_INTERVAL)
    finally:
        tail.close()


def dump_file(path: str, opts: ListOptions) -> int:
    """`dump FILE`: list the records of one segment or quarantine file; 0 when its bytes parse to the
    end of data, 1 when they stop parsing before it (said on stderr), 4 when it cannot be read."""
    file = Path(path)
    try:
        with open(file, "rb") as f:
            data = f.read()
    except IsADirectoryError:
        _fail(f"{file}: is a directory (dump reads one .wal or quarantine file; see memento inspect)")
    except OSError as exc:
        _fail(f"{file}: {exc.strerror or exc}")
    info = file_info(file, data)
    records, stop = parse(data, info.start, info.seq, info.expected_lsn, info.base_offset, info.frame)

    def newest(describe: Describe | None) -> int | None:
        stamps = [r.time or _payload_time(describe, r) for r in records]
        return max(stamps, default=0) or None

    lister, selection = _prepare(opts, newest)
    write_stderr(f"{file}: {info.note}")
    try:
        for record in records:
            if record.lsn < (opts.from_lsn or 0) or (opts.to_lsn is not None and record.lsn > opts.to_lsn):
                continue
            lister.feed(record)
        lister.printer.flush()
    except BrokenPipeError:
        _quiet_stdout()
    first = f"LSN {records[0].lsn}..{records[-1].lsn}" if records else "no record"
    rest = len(data.rstrip(b"\0")) - (stop.offset - info.base_offset)
    after = f"; {rest} bytes follow, not all zero" if not stop.clean and rest > 0 else ""
    write_stderr(
        f"{len(records)} records ({first}); bytes stop parsing at offset {stop.offset}: {stop.reason}{after}"
    )
    note = selection.untimed_note()
    if note:
        write_stderr(note)
    damaged_header = info.header is None and info.start == HEADER_SIZE
    return 0 if stop.clean and not damaged_header else 1


def _payload_time(describe: Describe | None, record: Record) -> int:
    if describe is None:
        return 0
    stamp = described(describe, record).get("time_us") or 0
    return int(stamp)
