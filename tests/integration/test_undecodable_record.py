"""A record whose checksum is good but whose payload cannot be decoded: every refusal names where it is.

The broker refuses to start on such a log (nothing after it could be trusted to apply), and says which
record: its LSN, type, segment and offset, so an operator can look at it (`memento inspect`) or cut the log
there. `memento replay --decoder ottermq` names its LSN too.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from memento.log import Log
from ottermq.broker.events import QueueDeclared
from ottermq.store.codec import RECORD_TYPES, encode
from ottermq.store.store import LOG_DIR
from tests.integration.conftest import serve_cmd


def _log_with_a_bad_payload(data_dir: Path) -> None:
    log = Log.open(data_dir / LOG_DIR, registry=RECORD_TYPES, segment_size=1 << 20)
    rtype, payload = encode(QueueDeclared("/", "q", True, False, False, {}))
    log.append(rtype, payload)
    log.append(rtype, b"\xff\x00not an event")  # a valid frame and checksum around a payload no codec reads
    log.sync()
    log.close()


def test_the_broker_names_the_record_it_cannot_apply(tmp_path: Path) -> None:
    _log_with_a_bad_payload(tmp_path)
    done = subprocess.run(serve_cmd(tmp_path), capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if "error" in line]
    assert lines, done.stderr
    assert "record LSN 2 (type 4) at segment 1 offset " in lines[-1] and "cannot be applied" in lines[-1]


def test_memento_replay_names_the_record_it_cannot_apply(tmp_path: Path) -> None:
    _log_with_a_bad_payload(tmp_path)
    # The console script next to this interpreter (as tests/memento/test_cli.py runs it).
    memento = [
        str(Path(sys.executable).with_name("memento")),
        "replay",
        str(tmp_path),
        "--decoder",
        "ottermq",
    ]
    done = subprocess.run(memento, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "record LSN 2 (type 4) cannot be applied" in done.stderr
