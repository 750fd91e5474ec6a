"""End to end with Celery (kombu over py-amqp): a worker runs a task that retries with a countdown.

Celery is a test dependency (the `test` extra), so this always runs in `make test`."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.integration.conftest import BrokerInfo, Resources

pytestmark = pytest.mark.timeout(90)

TASKS = """
import os
from pathlib import Path

from celery import Celery

app = Celery("tasks", broker=os.environ["CELERY_TEST_BROKER"], backend="rpc://")
app.conf.task_default_queue = os.environ["CELERY_TEST_QUEUE"]
app.conf.broker_connection_retry_on_startup = True


@app.task(bind=True, max_retries=3)
def flaky(self, a, b):
    marker = Path(os.environ["CELERY_TEST_MARKER"])
    attempts = int(marker.read_text()) if marker.exists() else 0
    marker.write_text(str(attempts + 1))
    if attempts < 2:
        raise self.retry(countdown=1)
    return a + b
"""


def test_task_with_retries_and_countdown(broker: BrokerInfo, resources: Resources, tmp_path: Path) -> None:
    (tmp_path / "tasks.py").write_text(textwrap.dedent(TASKS))
    queue = resources.queue()
    env = dict(os.environ)
    env.update(
        CELERY_TEST_BROKER=broker.url.replace("amqp://", "pyamqp://"),
        CELERY_TEST_QUEUE=queue,
        CELERY_TEST_MARKER=str(tmp_path / "attempts"),
        PYTHONPATH=str(tmp_path),
    )
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tasks",
            "worker",
            "--pool=solo",
            "--loglevel=INFO",
            "-Q",
            queue,
        ],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    sys.path.insert(0, str(tmp_path))
    saved = {
        key: os.environ.get(key) for key in ("CELERY_TEST_BROKER", "CELERY_TEST_QUEUE", "CELERY_TEST_MARKER")
    }
    os.environ.update({key: env[key] for key in saved})
    try:
        import tasks  # type: ignore[import-not-found]

        started = time.monotonic()
        result = tasks.flaky.apply_async((2, 3))
        assert result.get(timeout=60) == 5
        assert (tmp_path / "attempts").read_text() == "3"
        assert time.monotonic() - started >= 2.0  # two countdowns of one second
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        sys.path.remove(str(tmp_path))
        sys.modules.pop("tasks", None)
        worker.terminate()
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        log.close()
