"""The web UI in a real browser: Playwright for Python driving the system Chromium (headless) against a real
broker, through every page: login, overview charts, connections (close), channels, exchanges (publish),
queues (list with filter and paging over 10,000 queues, detail with get/publish/move/purge/delete), admin
(users, vhosts, permissions, policies, limits), and a phone-sized viewport.

Chromium comes from Debian's `chromium` package (tools/test_deps.sh installs it for `make test`):
`playwright install` downloads a browser build of its own, which the test machines cannot fetch. When no
Chromium is found these tests fail (they are not skipped), saying how to install it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pika
import pytest

from tests.integration.conftest import (
    _HTTP_LISTENING,
    _LISTENING,
    STARTUP_TIMEOUT,
    _free_port,
    _stop,
    serve_cmd,
)
from tests.integration.test_http_api import request

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parents[2]
# Debian's package puts the real binary here; /usr/bin/chromium is a wrapper script around it.
CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "chromium", "chromium-browser", "google-chrome")
BULK_VHOST = "bulk"
BULK_QUEUES = 10_000
# A page of the queue list, asked for as the UI asks for it, must answer within this on the loaded 2-core
# test machine with 10,000 queues (measured around 0.1-0.3 s).
LIST_BUDGET_SECONDS = 2.0
ADMIN = ("guest", "guest")


def chromium_path() -> str:
    """The system Chromium; fails (not skips) with the way to install it when there is none."""
    chosen = os.environ.get("OTTERMQ_CHROMIUM")
    for candidate in (chosen,) if chosen else CHROMIUM_CANDIDATES:
        found = candidate if os.path.isabs(candidate) and os.access(candidate, os.X_OK) else None
        found = found or shutil.which(candidate)
        if found:
            return found
    pytest.fail(
        "no Chromium found for the web UI tests: install Debian's package ('apt-get install chromium', as "
        "root; `make test` does it through tools/test_deps.sh) or set OTTERMQ_CHROMIUM to a Chromium binary"
    )


class Broker:
    """An OtterMQ of this module's own (10,000 queues must not slow other test files)."""

    def __init__(self, base: Path) -> None:
        self.data_dir = base / "data"
        self.log_path = base / "ottermq.log"
        self.http_port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTTERMQ_")}
        env["OTTERMQ_STATS_INTERVAL"] = "1"  # rates move within a test
        cmd = serve_cmd(self.data_dir, http_port=self.http_port)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            text = self.log_path.read_text(errors="replace")
            match = _LISTENING.search(text)
            if match and _HTTP_LISTENING.search(text):
                self.port = int(match.group(1))
                break
            assert self.process.poll() is None, f"broker exited:\n{text}"
            assert time.monotonic() < deadline, f"broker did not start:\n{text}"
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.http_port}/"

    def amqp(self, vhost: str = "/", name: str | None = None) -> pika.BlockingConnection:
        params = pika.ConnectionParameters(
            "127.0.0.1",
            self.port,
            vhost,
            pika.PlainCredentials(*ADMIN),
            client_properties={"connection_name": name} if name else None,
            socket_timeout=5,
        )
        return pika.BlockingConnection(params)

    def api(self, method: str, path: str, body: Any = None) -> Any:
        reply = request(self.http_port, method, path, body, auth=ADMIN)
        assert reply.status < 300, f"{method} {path}: {reply.status} {reply.raw!r}"
        return reply.body if reply.raw else None


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    broker = Broker(tmp_path_factory.mktemp("webui"))
    try:
        yield broker
    finally:
        _stop(broker.process)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install -c constraints.txt -e '.[test]'")
    executable = chromium_path()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


class UI:
    """A browser page on the web UI; page errors (uncaught exceptions) fail the test."""

    def __init__(self, page: Any, node: Broker) -> None:
        self.page = page
        self.node = node
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("dialog", lambda dialog: dialog.accept())  # the confirm() before close, purge, delete
        page.set_default_timeout(10_000)

    def login(self, user: str = ADMIN[0], password: str = ADMIN[1]) -> None:
        self.page.goto(self.node.url)
        self.page.fill("input[name=username]", user)
        self.page.fill("input[name=password]", password)
        self.page.click("#login-form button[type=submit]")
        self.page.wait_for_selector("#nav a", state="attached")

    def go(self, route: str, ready: str) -> None:
        """Open a route (#/...) and wait for `ready` to show."""
        self.page.goto(f"{self.node.url}#{route}")
        self.page.wait_for_selector(ready)

    def toast(self, text: str) -> None:
        self.page.wait_for_selector(f"#toasts .toast:has-text({text!r})")


def open_ui(browser: Any, node: Broker, **context: Any) -> Iterator[UI]:
    ctx = browser.new_context(**context)
    ui = UI(ctx.new_page(), node)
    try:
        yield ui
    finally:
        ctx.close()
    assert not ui.errors, f"errors in the page: {ui.errors}"


@pytest.fixture
def ui(browser: Any, node: Broker) -> Iterator[UI]:
    yield from open_ui(browser, node, viewport={"width": 1280, "height": 900})


def q(name: str) -> str:
    return quote(name, safe="")


def test_login_form_refuses_a_bad_password_without_a_browser_dialog(ui: UI) -> None:
    page = ui.page
    page.goto(ui.node.url)
    assert page.is_visible("#login-form") and not page.is_visible("#nav")
    page.fill("input[name=username]", "guest")
    page.fill("input[name=password]", "wrong")
    with page.expect_response(lambda r: r.url.endswith("/api/whoami")) as answer:
        page.click("#login-form button[type=submit]")
    # No challenge header: the browser hands the 401 to the page instead of opening its own dialog.
    assert answer.value.status == 401 and "www-authenticate" not in answer.value.headers
    page.wait_for_selector("#login-form .error:has-text('Login failed')")
    assert not page.is_visible("#nav")
    ui.login()
    assert page.inner_text("#whoami") == "guest"
    # The credentials live in this tab only: logging out forgets them.
    page.click("#logout")
    page.wait_for_selector("#login-form")
    assert page.evaluate("sessionStorage.getItem('ottermq.credentials')") is None


def test_what_a_user_sees_follows_its_tags(ui: UI) -> None:
    node = ui.node
    node.api("PUT", "/api/users/ui-watcher", {"password": "w4tch", "tags": "management"})
    node.api("PUT", "/api/permissions/%2F/ui-watcher", {"configure": "", "write": "", "read": ".*"})
    node.api("PUT", "/api/users/ui-amqp-only", {"password": "amqp", "tags": ""})
    # A user without a management tag is told why it cannot log in.
    ui.page.goto(ui.node.url)
    ui.page.fill("input[name=username]", "ui-amqp-only")
    ui.page.fill("input[name=password]", "amqp")
    ui.page.click("#login-form button[type=submit]")
    ui.page.wait_for_selector("#login-form .error:has-text('management tag')")
    # A management user: no admin pages, no broker-wide rates, its own vhost's queues.
    ui.login("ui-watcher", "w4tch")
    assert ui.page.locator("#nav a").all_inner_texts() == [
        "Overview", "Connections", "Channels", "Exchanges", "Queues",
    ]  # fmt: skip
    ui.page.wait_for_selector("text=This user sees no broker-wide message rates")
    ui.go("/queues", ".paged-list[data-loaded]")
    assert "bulk.q." not in ui.page.inner_text(".paged-list tbody")
    # A malformed address is "not found", not a broken page.
    ui.go("/queues/%E0%A4%A/x", "h1:has-text('Not found')")


def test_overview_shows_totals_and_live_charts(ui: UI) -> None:
    node = ui.node
    conn = node.amqp()
    try:
        ch = conn.channel()
        ch.queue_declare("ui.overview", durable=True)
        for i in range(7):
            ch.basic_publish("", "ui.overview", f"m{i}".encode())
        ui.login()
        ui.page.wait_for_selector(".cards .card")
        ready = ui.page.inner_text(".cards a[href='#/queues'] .value")
        assert int(ready.replace(",", "")) >= 1
        # The UI samples the overview on each refresh: a second visit adds a second point, so lines appear.
        ui.go("/queues", ".paged-list tbody tr")
        ui.go("/", ".chart-svg")
        ui.page.wait_for_selector("figure.chart:has-text('Queued messages') path.line", state="attached")
        rates = ui.page.inner_text("figure.chart:has-text('Message rates') .legend")
        assert "Publish" in rates and "/s" in rates
        assert "Ready" in ui.page.inner_text("figure.chart:has-text('Queued messages') .legend")
        assert ui.page.is_visible("text=Listeners")
    finally:
        conn.close()


def test_connections_and_channels_pages_close_a_connection(ui: UI) -> None:
    conn = ui.node.amqp(name="ui-victim")
    try:
        conn.channel().confirm_delivery()
        rows = ui.node.api("GET", "/api/connections")
        name = next(r["name"] for r in rows if r["client_properties"].get("connection_name") == "ui-victim")
        ui.login()
        # The connection page lists its channels.
        ui.go(f"/connections/{q(name)}", "text=Channels")
        ui.page.wait_for_selector("td:has-text('confirm')")
        ui.go("/channels", ".paged-list tbody td a")
        assert "confirm" in ui.page.inner_text(".paged-list tbody")
        ui.go("/connections", ".paged-list tbody tr td a")
        ui.page.locator("tr", has_text=name).locator("button:has-text('Close')").click()
        ui.toast("closed")
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                conn.process_data_events(time_limit=0.1)
        assert closed.value.reply_code == 320
    finally:
        if conn.is_open:
            conn.close()


def test_exchange_page_publishes_a_message(ui: UI) -> None:
    conn = ui.node.amqp()
    try:
        ch = conn.channel()
        ch.exchange_declare("ui.orders", "topic", durable=True)
        ch.queue_declare("ui.orders.eu", durable=True)
        ch.queue_bind("ui.orders.eu", "ui.orders", "order.eu.*")
        ui.login()
        ui.go("/exchanges", ".paged-list tbody tr")
        ui.page.fill(".paged-list input.filter", "ui.orders")
        ui.page.wait_for_selector(".paged-list tbody a:has-text('ui.orders')")
        ui.page.click(".paged-list tbody a:has-text('ui.orders')")
        ui.page.wait_for_selector("text=Bindings from this exchange")
        assert "order.eu.*" in ui.page.inner_text("main")
        form = ui.page.locator("form.publish-form")
        form.locator("input[name=routing_key]").fill("order.eu.42")
        form.locator("textarea[name=payload]").fill("from the exchange page")
        form.locator("input[name=headers]").fill('{"x-origin": "ui"}')
        form.locator("button[type=submit]").click()
        ui.toast("Message published.")
        method, props, body = ch.basic_get("ui.orders.eu", auto_ack=True)
        assert body == b"from the exchange page" and method.routing_key == "order.eu.42"
        assert props.headers == {"x-origin": "ui"} and props.delivery_mode == 2
    finally:
        conn.close()


def _declare_bulk(node: Broker) -> float:
    """10,000 queues in their own vhost over one AMQP channel; the seconds it took."""
    node.api("PUT", f"/api/vhosts/{BULK_VHOST}")
    node.api("PUT", f"/api/permissions/{BULK_VHOST}/guest", {"configure": ".*", "write": ".*", "read": ".*"})
    started = time.monotonic()
    conn = node.amqp(BULK_VHOST)
    try:
        ch = conn.channel()
        for i in range(BULK_QUEUES):
            ch.queue_declare(f"bulk.q.{i:05d}", durable=False)
    finally:
        conn.close()
    return time.monotonic() - started


def test_queue_list_filters_and_pages_10000_queues_quickly(ui: UI) -> None:
    node = ui.node
    declared_in = _declare_bulk(node)
    # The request the list makes, timed from outside the browser as well.
    started = time.monotonic()
    page = node.api("GET", "/api/queues?page=1&page_size=50&name=bulk.q.0999&sort=name")
    plain = time.monotonic() - started
    assert page["filtered_count"] == 10 and page["total_count"] >= BULK_QUEUES

    ui.login()
    ui.go("/queues", ".paged-list[data-loaded] tbody tr")
    summary = ui.page.inner_text(".paged-list .summary")
    assert "10,0" in summary, summary  # "1-50 of 10,0xx"
    browser_ms = int(ui.page.get_attribute(".paged-list", "data-request-ms") or "0")
    # Page 2 through the pager.
    ui.page.click(".pager button[title='Next page']")
    ui.page.wait_for_selector(".page-of:has-text('Page 2 of')")
    # Filter on the server: only the 10 matching rows come back.
    ui.page.fill(".paged-list input.filter", "bulk.q.0999")
    ui.page.wait_for_selector(".summary:has-text('of 10 (filtered from')")
    rows = ui.page.locator(".paged-list tbody tr").all_inner_texts()
    assert len(rows) == 10 and all("bulk.q.0999" in row for row in rows)
    filtered_ms = int(ui.page.get_attribute(".paged-list", "data-request-ms") or "0")
    # Sorting by name reversed puts the last one first.
    ui.page.click("th.sortable button:has-text('Name')")
    ui.page.wait_for_selector(".paged-list th[aria-sort='ascending']")
    ui.page.click("th.sortable button:has-text('Name')")
    ui.page.wait_for_selector(".paged-list th[aria-sort='descending']")
    ui.page.wait_for_selector(".paged-list tbody tr:first-child a:text-is('bulk.q.09999')")
    # A regex filter.
    ui.page.check(".list-controls input[type=checkbox]")
    ui.page.fill(".paged-list input.filter", "^bulk\\.q\\.0000[12]$")
    ui.page.wait_for_selector(".summary:has-text('of 2 (filtered from')")
    ui.page.fill(".paged-list input.filter", "")
    ui.page.uncheck(".list-controls input[type=checkbox]")
    print(
        f"\n{BULK_QUEUES} queues declared in {declared_in:.1f} s; list page over HTTP {plain * 1000:.0f} ms, "
        f"in the browser {browser_ms} ms (first page), {filtered_ms} ms (filtered)"
    )
    assert plain < LIST_BUDGET_SECONDS and browser_ms / 1000 < LIST_BUDGET_SECONDS
    assert filtered_ms / 1000 < LIST_BUDGET_SECONDS


def test_queue_page_publish_get_move_purge_delete(ui: UI) -> None:
    node = ui.node
    conn = node.amqp()
    try:
        ch = conn.channel()
        ch.exchange_declare("ui.detail.x", "direct", durable=True)
        for name in ("ui.detail", "ui.detail.target"):
            ch.queue_declare(name, durable=True)
            ch.queue_purge(name)
        ch.queue_bind("ui.detail", "ui.detail.x", "rk-detail")
        for i in range(6):
            ch.basic_publish(
                "", "ui.detail", f"body-{i}".encode(), pika.BasicProperties(message_id=f"id-{i}")
            )
        consumer = node.amqp(name="ui-consumer")
        cch = consumer.channel()
        cch.queue_declare("ui.detail.consumed")
        cch.basic_consume("ui.detail.consumed", lambda *args: None, consumer_tag="ui-tag")

        ui.login()
        ui.go(f"/queues/%2F/{q('ui.detail')}", "text=Details")
        ui.page.wait_for_selector("td:has-text('rk-detail')")  # the binding
        assert ui.page.is_visible("figure.chart:has-text('Queued messages')")

        # Publish through the default exchange to this queue.
        form = ui.page.locator("form.publish-form")
        form.locator("textarea[name=payload]").fill("published from the queue page")
        form.locator("button[type=submit]").click()
        ui.toast("Message published.")
        assert node.api("GET", "/api/queues/%2F/ui.detail")["messages_ready"] == 7

        # Get two messages, requeued: shown, still in the queue.
        ui.page.fill("#get-form input[name=count]", "2")
        ui.page.click("#get-form button[type=submit]")
        ui.page.wait_for_selector(".message:has-text('body-1')")
        assert "body-0" in ui.page.inner_text(".messages")
        assert node.api("GET", "/api/queues/%2F/ui.detail")["messages_ready"] == 7

        # Move three to the target queue: got with ack here, published there, properties kept, in order.
        ui.page.fill("#move-form input[name=target]", "ui.detail.target")
        ui.page.fill("#move-form input[name=move_count]", "3")
        ui.page.click("#move-form button[type=submit]")
        ui.page.wait_for_selector("#move-status:has-text('Moved 3 message(s)')")
        assert node.api("GET", "/api/queues/%2F/ui.detail")["messages_ready"] == 4
        moved = [ch.basic_get("ui.detail.target", auto_ack=True) for _ in range(3)]
        assert [body for _, _, body in moved] == [b"body-0", b"body-1", b"body-2"]
        assert [props.message_id for _, props, _ in moved] == ["id-0", "id-1", "id-2"]
        # To a queue that does not exist: refused before anything is taken.
        ui.page.fill("#move-form input[name=target]", "ui.no.such.queue")
        ui.page.fill("#move-form input[name=move_count]", "1")
        ui.page.click("#move-form button[type=submit]")
        ui.page.wait_for_selector("#move-status:has-text('no queue')")
        assert node.api("GET", "/api/queues/%2F/ui.detail")["messages_ready"] == 4

        # Purge, then delete.
        ui.page.click("#purge")
        ui.toast("Queue purged.")
        assert node.api("GET", "/api/queues/%2F/ui.detail")["messages_ready"] == 0
        ui.page.click("#delete-queue")
        ui.page.wait_for_url("**/#/queues")
        assert request(node.http_port, "GET", "/api/queues/%2F/ui.detail", auth=ADMIN).status == 404

        # A message the API cannot carry (its request bodies stop at 1 MiB) is never taken: the move stops.
        ch.queue_declare("ui.detail.big", durable=True)
        ch.basic_publish("", "ui.detail.big", b"x" * (900 * 1024))
        ch.basic_publish("", "ui.detail.big", b"small")
        # Not confirmed: wait until both are in the queue (the big one's frames take the broker some loop
        # turns, and a move meanwhile would find the queue empty).
        deadline = time.monotonic() + 10
        while node.api("GET", "/api/queues/%2F/ui.detail.big")["messages_ready"] != 2:
            assert time.monotonic() < deadline, "the two messages never reached the queue"
            time.sleep(0.05)
        ui.go(f"/queues/%2F/{q('ui.detail.big')}", "#move-form")
        ui.page.fill("#move-form input[name=target]", "ui.detail.target")
        ui.page.click("#move-form button[type=submit]")
        ui.page.wait_for_selector("#move-status:has-text('more than the HTTP API carries')")
        assert node.api("GET", "/api/queues/%2F/ui.detail.big")["messages_ready"] == 2
        assert node.api("GET", "/api/queues/%2F/ui.detail.target")["messages_ready"] == 0

        # A queue with a consumer lists it.
        ui.go(f"/queues/%2F/{q('ui.detail.consumed')}", "text=Consumers")
        ui.page.wait_for_selector("td:has-text('ui-tag')")
        consumer.close()
    finally:
        conn.close()


def test_admin_pages_create_user_vhost_permission_policy_limit(ui: UI) -> None:
    node = ui.node
    page = ui.page
    ui.login()
    ui.go("/admin/users", "#add-user")
    page.fill("#add-user input[name=username]", "ui-operator")
    page.fill("#add-user input[name=password]", "s3cret-ui")
    page.fill("#add-user input[name=tags]", "management,policymaker")
    page.click("#add-user button[type=submit]")
    page.wait_for_selector("td a:has-text('ui-operator')")
    assert request(node.http_port, "GET", "/api/whoami", auth=("ui-operator", "s3cret-ui")).status == 200

    ui.go("/admin/vhosts", "#add-vhost")
    page.fill("#add-vhost input[name=vhost_name]", "ui-vhost")
    page.click("#add-vhost button[type=submit]")
    page.wait_for_selector("td:text-is('ui-vhost')")
    page.wait_for_selector("#vhost-select option[value='ui-vhost']", state="attached")

    ui.go("/admin/permissions", "#set-permission")
    page.select_option("#set-permission select[name=user]", "ui-operator")
    page.select_option("#set-permission select[name=vhost]", "ui-vhost")
    page.fill("#set-permission input[name=configure]", "^ui\\.")
    page.click("#set-permission button[type=submit]")
    ui.toast("Permission set.")
    perm = node.api("GET", "/api/permissions/ui-vhost/ui-operator")
    assert (perm["configure"], perm["write"], perm["read"]) == ("^ui\\.", ".*", ".*")

    # The user's page shows the permission.
    ui.go("/admin/users/ui-operator", "text=Permissions")
    page.wait_for_selector("td:has-text('ui-vhost')")

    ui.go("/admin/policies", "#add-policy")
    page.select_option("#add-policy select[name=vhost]", "ui-vhost")
    page.fill("#add-policy input[name=policy_name]", "ui-cap")
    page.fill("#add-policy input[name=pattern]", "^capped\\.")
    page.select_option("#add-policy select[name=apply-to]", "queues")
    page.fill("#add-policy textarea[name=definition]", '{"max-length": 10}')
    page.click("#add-policy button[type=submit]")
    page.wait_for_selector("td:text-is('ui-cap')")
    policy = node.api("GET", "/api/policies/ui-vhost/ui-cap")
    assert policy["definition"] == {"max-length": 10} and policy["apply-to"] == "queues"
    # A bad definition is refused with the broker's reason.
    page.fill("#add-policy input[name=policy_name]", "ui-bad")
    page.fill("#add-policy textarea[name=definition]", '{"max-length": "lots"}')
    page.click("#add-policy button[type=submit]")
    page.wait_for_selector("#toasts .toast.error")

    ui.go("/admin/limits", "#set-vhost-limit")
    limits = request(node.http_port, "GET", "/api/vhost-limits", auth=ADMIN)
    if limits.status == 404:
        # The limits API is another change; until it lands the page says so and this step is skipped.
        page.wait_for_selector("#no-vhost-limits")
        warnings.warn(
            "no /api/vhost-limits on this broker: the limit step of the admin test was skipped", stacklevel=1
        )
    else:
        page.select_option("#set-vhost-limit select[name=vhost]", "ui-vhost")
        page.select_option("#set-vhost-limit select[name=vhost_limit]", "max-queues")
        page.fill("#set-vhost-limit input[name=vhost_limit_value]", "5")
        page.click("#set-vhost-limit button[type=submit]")
        page.wait_for_selector("td:text-is('max-queues')")
        rows = node.api("GET", "/api/vhost-limits/ui-vhost")
        assert rows[0]["value"]["max-queues"] == 5


def test_phone_viewport_has_no_horizontal_scroll(browser: Any, node: Broker) -> None:
    routes = [
        ("/", ".cards .card"),
        ("/connections", ".paged-list[data-loaded]"),
        ("/channels", ".paged-list[data-loaded]"),
        ("/exchanges", ".paged-list[data-loaded]"),
        ("/exchanges/%2F/amq.direct", "form.publish-form"),
        ("/queues", ".paged-list[data-loaded]"),
        ("/admin/users", "#add-user"),
        ("/admin/vhosts", "#add-vhost"),
        ("/admin/permissions", "#set-permission"),
        ("/admin/policies", "#add-policy"),
        ("/admin/limits", "#set-vhost-limit"),
    ]
    conn = node.amqp()
    conn.channel().queue_declare("ui.phone", durable=True)
    routes.append((f"/queues/%2F/{q('ui.phone')}", "#get-form"))
    try:
        for ui in open_ui(
            browser, node, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
        ):
            ui.login()
            # The navigation folds behind a menu button.
            assert not ui.page.is_visible("#nav a") and ui.page.is_visible("#menu-toggle")
            ui.page.click("#menu-toggle")
            ui.page.click("#nav a:has-text('Queues')")
            ui.page.wait_for_selector(".paged-list[data-loaded]")
            for route, ready in routes:
                ui.go(route, ready)
                text = ui.page.inner_text("main")
                assert re.search(r"\b(null|undefined|NaN)\b", text) is None, f"{route}: {text}"
                width = ui.page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
                assert width[0] <= width[1], f"{route}: the page scrolls sideways ({width[0]} > {width[1]})"
    finally:
        conn.close()
