"""The `memento` command line: inspect, replay and verify a log directory, never modifying it.

Exit codes (inspect and verify): 0 clean, 1 repairable (open would repair a torn tail or drop a leftover
file), 2 refused (open would refuse), 3 unsupported version, 4 bad input (missing path, not a log
directory, unknown decoder), 74 a file could not be read (permissions, I/O error; every command: the line
names the file). Errors are one line on stderr; progress bars appear only on a terminal.
A directory that holds no log but exactly one subdirectory that does (an application's data directory
with its log one level down) stands for that subdirectory, named on stderr ("memento: using DATA/log").
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from memento.identity import show_id
from memento.inspect import (
    EXIT_BAD_INPUT,
    EXIT_IO_ERROR,
    WAL_DIR,
    Inspection,
    NotALogDir,
    find_log_dir,
    inspect_log,
    iter_records,
    parse_types,
)
from memento.inspect_decoders import DecoderError, describer, resolve
from memento.listing import (
    DecodeOpt,
    DecoderOpt,
    FollowOpt,
    FromOpt,
    ListOptions,
    MessageIdOpt,
    PayloadOpt,
    QueueOpt,
    SinceOpt,
    ToOpt,
    TypeOpt,
    UntilOpt,
    dump_file,
    list_log_records,
)
from memento.records import add_findings, undecodable
from memento.recovery import ACCEPTED, REPAIRABLE
from memento.segment import SUFFIX

if TYPE_CHECKING:
    from typer._click.core import Context as ClickContext  # the (vendored) click that typer's groups take


def describe_os_error(exc: OSError) -> str:
    """`file: error` (both files for a rename), or the error's text when it names no file."""
    names = [str(name) for name in (exc.filename, exc.filename2) if name is not None]
    text = exc.strerror or str(exc)
    return f"{' -> '.join(names)}: {text}" if names else text


class _Commands(TyperGroup):
    """Every command (present and future) turns an OSError into one line naming the file, exit 74:
    a permission or I/O error is not damage, and a traceback helps no operator."""

    def invoke(self, ctx: ClickContext) -> Any:
        try:
            return super().invoke(ctx)
        except OSError as exc:
            typer.echo(f"memento: error: {describe_os_error(exc)}", err=True)
            raise typer.Exit(EXIT_IO_ERROR) from None


app = typer.Typer(
    cls=_Commands,
    help="Memento: inspect, replay and verify a write-ahead log.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

DirArg = Annotated[
    str,
    typer.Argument(
        help="The log directory (holding wal/ and snapshots/), or a directory with exactly one of them."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of text.")]
TypesOpt = Annotated[
    str | None,
    typer.Option(
        "--types", help="Record types the application uses, e.g. '1-3,7'; others count as unsupported."
    ),
]


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Print a one-line error on stderr and exit."""
    typer.echo(f"memento: error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def progress_for(root: str, label: str) -> Iterator[Callable[[str], None] | None]:
    """A per-segment progress callback drawing a bar on stderr, or None when stderr is not a terminal."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress

    wal = os.path.join(root, WAL_DIR)
    total = sum(1 for n in os.listdir(wal) if n.endswith(SUFFIX)) if os.path.isdir(wal) else 0
    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=total or None)

        def step(_name: str) -> None:
            bar.advance(task)

        yield step


def log_dir(directory: str) -> str:
    """The log directory to read for `directory` (itself, or its only subdirectory holding a log, which
    is then named on stderr); exits with a one-line error when there is none or several."""
    try:
        path, nested = find_log_dir(directory)
    except NotALogDir as exc:
        fail(str(exc))
    if nested:
        typer.echo(f"memento: using {path}", err=True)
    return str(path)


def _inspect(
    directory: str, types: str | None, *, verify: bool, label: str, by_type: bool = True, quick: bool = False
) -> Inspection:
    """Inspect `directory`, which `log_dir` has resolved already."""
    try:
        registry = parse_types(types) if types else None
    except ValueError:
        fail(f"--types {types!r}: expected numbers and ranges such as '1-3,7'")
    try:
        with progress_for(directory, label) as step:
            return inspect_log(
                directory,
                registry=registry,
                verify_snapshots=verify,
                progress=step,
                by_type=by_type,
                quick=quick,
            )
    except NotALogDir as exc:
        fail(str(exc))


def _lsns(first: int | None, last: int | None) -> str:
    return f"{first}..{last}" if first is not None else "-"


def render(insp: Inspection, *, verb: str) -> str:
    """The human-readable report of an inspection."""
    lines = [f"log directory {insp.path}", f"log id: {show_id(insp.log_id)}"]
    if insp.last_stop is not None:
        lines.extend(insp.last_stop.describe())
    if insp.snapshots:
        lines.append(
            f"snapshots: {len(insp.snapshots)} (recovery starts from LSN {insp.snapshot_lsn}, "
            f"{insp.snapshot_status})"
        )
        for snap in insp.snapshots:
            state = snap.damage or ("verified" if snap.verified else "manifest ok")
            lines.append(
                f"  LSN {snap.lsn:<10} {snap.raw_size:>12} bytes, {snap.stored_size:>10} stored, "
                f"{snap.chunks} chunks  {state}"
            )
    else:
        lines.append(f"snapshots: none ({insp.snapshot_note or insp.snapshot_status})")
    lines.append(f"segments: {len(insp.segments)}")
    for seg in insp.segments:
        if seg.header_problem is not None:
            lines.append(
                f"  {seg.name}  seq {seg.seq}  base {seg.base_lsn}  size {seg.size}  "
                f"BAD HEADER: {seg.header_problem}"
            )
            continue
        types = " ".join(f"{t}:{n}" for t, n in sorted(seg.by_type.items())) or "-"
        extra = ("  sealed" if seg.sealed else "") + (
            f"  {seg.junk_bytes} bytes after data" if seg.junk_bytes else ""
        )
        lsns = _lsns(seg.first_lsn, seg.last_lsn)
        lines.append(
            f"  {seg.name}  seq {seg.seq}  base {seg.base_lsn}  LSN {lsns}"
            f"  size {seg.size}  data {seg.data_end}  records {seg.records} [{types}]{extra}"
        )
    for name in insp.temp_files:
        lines.append(f"  {name}  (temporary)")
    for name in insp.stray_files:
        lines.append(f"  {name}  (not a segment; ignored)")
    lines.append(f"log ends at LSN {insp.end_lsn}")
    lines.extend(f"warning: {warning}" for warning in insp.warnings)
    if insp.findings:
        lines.append("damage:")
        lines.extend(f"  [{f.severity}] {f.kind}: {f.message}" for f in insp.findings)
    lines.append(f"{verb}: {insp.status} (exit {insp.exit_code})")
    return "\n".join(lines)


@app.command()
def inspect(
    directory: DirArg,
    as_json: JsonOpt = False,
    records: Annotated[
        bool,
        typer.Option(
            "--records",
            help="List the records instead, one a line (with --json: JSON lines, streamed); the verdict, "
            "when not clean, goes to stderr.",
        ),
    ] = False,
    types: TypesOpt = None,
    decode: DecodeOpt = False,
    payload: PayloadOpt = False,
    decoder: DecoderOpt = None,
    from_lsn: FromOpt = None,
    to_lsn: ToOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    rtype: TypeOpt = None,
    queue: QueueOpt = None,
    message_id: MessageIdOpt = None,
    follow: FollowOpt = False,
) -> None:
    """Segments, LSN ranges, record counts by type, snapshots and damage; exit 0/1/2/3.

    With --records: the records themselves, filtered, described by a decoder (--decode), and with
    --follow as a running broker appends them (read without the log's lock; Ctrl-C or SIGTERM ends it,
    exit 0)."""
    # A listing of the whole log checks the records as it reads them (memento.inspect.iter_records): only
    # the last segment is scanned beforehand, to find where the log ends. A listing of an LSN range reads
    # only part of the log, so the log is scanned whole first, for the verdict on all of it.
    whole = from_lsn is None and to_lsn is None
    quick = records and whole
    insp = _inspect(
        log_dir(directory), types, verify=False, label="inspecting", by_type=not records, quick=quick
    )
    if records:
        opts = ListOptions(
            as_json, decode, payload, decoder, from_lsn, to_lsn, since, until,
            rtype or [], queue or [], message_id or [], follow,
        )  # fmt: skip
        raise typer.Exit(list_log_records(insp, opts))
    if as_json:
        typer.echo(json.dumps(insp.as_json(), indent=2))
    else:
        typer.echo(render(insp, verb="verdict"))
    raise typer.Exit(insp.exit_code)


@app.command()
def dump(
    file: Annotated[str, typer.Argument(help="A segment file (wal/*.wal) or a file of quarantine/.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines, one record each.")] = False,
    decode: DecodeOpt = False,
    payload: PayloadOpt = False,
    decoder: DecoderOpt = None,
    from_lsn: FromOpt = None,
    to_lsn: ToOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    rtype: TypeOpt = None,
    queue: QueueOpt = None,
    message_id: MessageIdOpt = None,
) -> None:
    """The records of one file, as inspect --records lists them; exit 0 when its bytes parse to the end
    of data, 1 when they stop parsing before it (where and why: on stderr), 4 when it cannot be read.

    A quarantine file of cut bytes has no header: records are read from its offset 0 and shown at their
    offset in the segment they were cut from."""
    opts = ListOptions(
        as_json, decode, payload, decoder, from_lsn, to_lsn, since, until,
        rtype or [], queue or [], message_id or [],
    )  # fmt: skip
    raise typer.Exit(dump_file(file, opts))


@app.command()
def verify(
    directory: DirArg,
    as_json: JsonOpt = False,
    types: TypesOpt = None,
    decoder: Annotated[
        str | None,
        typer.Option(
            "--decoder",
            help="Also decode every payload with this decoder (e.g. ottermq): a record whose checksum "
            "passes but whose payload does not decode is damage (exit 2), named by LSN, segment, offset.",
        ),
    ] = None,
) -> None:
    """Read everything and check every checksum (segment headers, records, every snapshot chunk)."""
    describe = None
    if decoder is not None:
        try:
            describe = describer(resolve(decoder)())
        except DecoderError as exc:
            fail(str(exc))
        if describe is None:
            fail(f"decoder {decoder!r} cannot check records (it has no describe method)")
    directory = log_dir(directory)
    insp = _inspect(directory, types, verify=True, label="verifying")
    if describe is not None:
        try:
            with progress_for(directory, "decoding") as step:
                add_findings(insp, undecodable(insp, describe, step))
        except OSError as exc:
            fail(f"{directory}: {exc.strerror or exc}")
    typer.echo(json.dumps(insp.as_json(), indent=2) if as_json else render(insp, verb="verify"))
    raise typer.Exit(insp.exit_code)


@app.command()
def replay(
    directory: DirArg,
    to_lsn: Annotated[int | None, typer.Option("--to-lsn", help="Stop after this LSN.")] = None,
    decoder: Annotated[
        str, typer.Option("--decoder", help="Registered decoder name or module:callable.")
    ] = "generic",
    from_start: Annotated[
        bool, typer.Option("--from-start", help="Ignore the snapshots; replay from the first record.")
    ] = False,
    types: TypesOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the projection as JSON (the default).")
    ] = False,
    as_text: Annotated[
        bool, typer.Option("--text", help="Print a summary for people: what holds the log's space.")
    ] = False,
) -> None:
    """Replay the records through a decoder and print the projection as it stood (JSON).

    It starts from the newest snapshot at or before the target LSN (the projection then includes the
    snapshot's state), else from the first record, and says which on stderr. Replayed to the end with a
    decoder that names what holds records (ottermq: queues), it adds what keeps each segment on disk."""
    from memento.pins import CopyTracker, HoldsSegments, render_pins, segment_pins, totals
    from memento.record import FLAG_RELOCATED
    from memento.replay_start import Start, choose_start
    from memento.trace import read_record

    if as_json and as_text:
        fail("--json and --text exclude each other")
    try:
        factory = resolve(decoder)
    except DecoderError as exc:
        fail(str(exc))
    directory = log_dir(directory)
    insp = _inspect(directory, types, verify=False, label="reading")
    root = insp.path
    target = insp.end_lsn if to_lsn is None else to_lsn
    projection = factory()
    start = Start(None, ()) if from_start else choose_start(root, target)
    after = 0
    if start.snapshot is not None:
        projection.load_snapshot(start.snapshot.lsn, start.snapshot.state)
        after = start.snapshot.lsn
    first = next((s.base_lsn for s in insp.segments), 1)
    if first > after + 1:
        held = (
            f"the snapshots are at LSN {', '.join(map(str, start.kept))}"
            if start.kept
            else "there is no snapshot"
        )
        fail(f"cannot rebuild the state at LSN {target}: the log starts at LSN {first} and {held}")
    if not from_start and (to_lsn is not None or start.skipped):
        typer.echo(f"memento: {start.describe(target)}", err=True)
    if target > insp.end_lsn:
        typer.echo(f"memento: warning: the log ends at LSN {insp.end_lsn}", err=True)
    copied = CopyTracker(insp)
    try:
        with progress_for(directory, "replaying") as step:
            for record in iter_records(insp, after, target, progress=step):
                if record.flags & FLAG_RELOCATED:
                    copied.note(record)
                projection.apply(record)
    except OSError:
        raise  # one line naming the file, exit 74 (_Commands)
    except Exception as exc:
        fail(f"decoder {decoder!r} failed: {type(exc).__name__}: {exc}")
    doc = projection.projection()
    lines: list[str] = []
    if isinstance(projection, HoldsSegments) and target >= insp.end_lsn:
        try:
            holders = projection.holders(lambda seq, offset: read_record(insp, seq, offset))
        except OSError as exc:
            fail(f"{exc.filename or directory}: {exc.strerror or exc}")
        pins = segment_pins(insp, holders, copied.through)
        holder_totals = totals(holders)
        doc["holders"] = [t.as_json() for t in holder_totals]
        doc["segments"] = [p.as_json() for p in pins]
        lines = render_pins(pins, holder_totals)
    if as_text:
        typer.echo(f"replayed {root} up to LSN {min(target, insp.end_lsn)}")
        typer.echo("\n".join(lines) if lines else json.dumps(doc, indent=2, default=str))
    else:
        typer.echo(json.dumps(doc, indent=2, default=str))
    if insp.exit_code >= 2:
        _warn_refused(insp, "replayed")
        raise typer.Exit(insp.exit_code)


def _warn_refused(insp: Inspection, verb: str) -> None:
    # The first refused finding names the file (a segment, or the snapshot store's data.mdb).
    why = next(
        (f"{f.kind}: {f.message}; " for f in insp.findings if f.severity not in (REPAIRABLE, ACCEPTED)), ""
    )
    typer.echo(
        f"memento: warning: log is {insp.status}: {why}{verb} only up to LSN {insp.end_lsn} "
        "(see memento inspect)",
        err=True,
    )


@app.command()
def trace(
    args: Annotated[
        list[str],
        typer.Argument(
            metavar="[ID] DIR", help="The item's id (an OtterMQ message's message-id) and the log directory."
        ),
    ],
    lsn: Annotated[
        int | None, typer.Option("--lsn", help="Trace what the record at this LSN logged (then only DIR).")
    ] = None,
    decoder: Annotated[
        str | None,
        typer.Option("--decoder", help="Decoder that traces (default: the installed one that can)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines instead of text.")] = False,
) -> None:
    """Every record that touched one item (a message: published where, removed why, when); exit 0 found,
    1 not found, 2 or 3 as inspect when the log is damaged (the trace then stops where recovery would)."""
    from memento.errors import CorruptRecord
    from memento.inspect import EXIT_CODES
    from memento.recovery import REFUSED
    from memento.trace import TracerError, find_tracer, quick_inspection

    if len(args) != (1 if lsn is not None else 2):
        fail("give ID DIR, or DIR with --lsn N")
    key = None if lsn is not None else args[0]
    try:
        tracer = find_tracer(decoder)
    except TracerError as exc:
        fail(str(exc))
    directory = log_dir(args[-1])
    try:
        insp = quick_inspection(directory)
        lines = tracer.trace(insp, key, lsn)
    except NotALogDir as exc:
        fail(str(exc))
    except CorruptRecord as exc:
        fail(str(exc), EXIT_CODES[REFUSED])
    except OSError as exc:
        fail(f"{exc.filename or directory}: {exc.strerror or exc}")
    except ValueError as exc:
        fail(str(exc))
    for text, doc in lines:
        typer.echo(json.dumps(doc, default=str) if as_json else text)
    if insp.exit_code >= 2:
        _warn_refused(insp, "traced")
        raise typer.Exit(insp.exit_code)
    if any(doc.get("event") == "not-found" for _text, doc in lines):
        raise typer.Exit(1)


@app.command()
def version() -> None:
    """Print the Memento version."""
    from memento import __version__

    typer.echo(__version__)


def _print_version(value: bool) -> None:
    if value:
        from memento import __version__

        typer.echo(f"memento {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    _version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit"
    ),
) -> None:
    """Memento: inspect, replay and verify a write-ahead log."""


def main() -> None:
    """Entry point of the `memento` console script."""
    app()
