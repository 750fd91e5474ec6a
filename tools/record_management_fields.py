"""Record a RabbitMQ 3.10 node's management objects with traffic on them, for the field tests.

Usage: python tools/record_management_fields.py AMQP_PORT HTTP_PORT OUT.json [SETTLE_SECONDS]

Run against a private RabbitMQ node (rabbitmq_management, rates_mode basic, collect_statistics_interval
5000): it declares a vhost "fields" with an exchange, a queue with a consumer attached and one without,
publishes over AMQP and over the API, gets over AMQP and the API, waits for the statistics to be
collected, and records the responses tests/integration/test_http_fields.py compares key sets with.
"""

from __future__ import annotations

import base64
import json
import sys
import time
import urllib.parse
import urllib.request
from typing import Any

import pika

VHOST = "fields"


def call(port: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    request.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw else None


def traffic(amqp_port: int, http_port: int) -> pika.BlockingConnection:
    """Make the objects and the traffic the recording describes; the connection stays open (its
    consumer attached) until the caller closes it."""
    v = urllib.parse.quote(VHOST, safe="")
    call(http_port, "DELETE", f"/api/vhosts/{v}")
    assert call(http_port, "PUT", f"/api/vhosts/{v}")[0] in (201, 204)
    perms = {"configure": ".*", "write": ".*", "read": ".*"}
    call(http_port, "PUT", f"/api/permissions/{v}/guest", perms)
    params = pika.ConnectionParameters(
        "127.0.0.1",
        amqp_port,
        VHOST,
        pika.PlainCredentials("guest", "guest"),
        client_properties={"app": "rec"},
    )
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.exchange_declare("fx", "fanout", durable=True)
    ch.queue_declare("busy", durable=True)
    ch.queue_declare("idle", durable=True)
    ch.queue_bind("busy", "fx")
    ch.queue_bind("idle", "fx")
    for i in range(10):
        ch.basic_publish("fx", "", b"m%d" % i, pika.BasicProperties(delivery_mode=2, timestamp=1_700_000_000))
    method, _, _ = ch.basic_get("busy")
    assert method is not None
    ch.basic_reject(method.delivery_tag, requeue=True)
    method, _, _ = ch.basic_get("busy", auto_ack=True)
    body = {"properties": {}, "routing_key": "", "payload": "api", "payload_encoding": "string"}
    assert call(http_port, "POST", f"/api/exchanges/{v}/fx/publish", body)[0] == 200
    got = {"count": 2, "ackmode": "ack_requeue_false", "encoding": "auto"}
    assert call(http_port, "POST", f"/api/queues/{v}/idle/get", got)[0] == 200
    consumer_ch = conn.channel()
    consumer_ch.basic_qos(prefetch_count=3)
    consumer_ch.basic_consume("busy", lambda c, m, p, b: None, consumer_tag="watcher")
    conn.process_data_events(1)
    return conn


PATHS = {
    "queue": "/api/queues/{v}/busy",
    "queue/idle": "/api/queues/{v}/idle",
    "queue/samples": "/api/queues/{v}/busy?msg_rates_age=60&msg_rates_incr=5&lengths_age=60&lengths_incr=5",
    "queue/msg-rates-only": "/api/queues/{v}/busy?msg_rates_age=60&msg_rates_incr=5",
    "queues": "/api/queues/{v}",
    "exchange": "/api/exchanges/{v}/fx",
    "exchange/samples": "/api/exchanges/{v}/fx?msg_rates_age=60&msg_rates_incr=5",
    "exchange/default": "/api/exchanges/{v}/amq.default",
    "vhost": "/api/vhosts/{v}",
    "vhost/samples": "/api/vhosts/{v}?msg_rates_age=60&msg_rates_incr=5",
    "vhost/lengths-only": "/api/vhosts/{v}?lengths_age=60&lengths_incr=5",
    "channels": "/api/vhosts/{v}/channels",
    "connections": "/api/vhosts/{v}/connections",
    "nodes": "/api/nodes",
    "overview": "/api/overview",
    "overview/samples": "/api/overview?msg_rates_age=60&msg_rates_incr=5&lengths_age=60&lengths_incr=5",
}


def responses(http_port: int) -> dict[str, Any]:
    """GET every path of PATHS, then the first channel and connection of the vhost by name."""
    v = urllib.parse.quote(VHOST, safe="")
    recorded: dict[str, Any] = {}
    for key, template in PATHS.items():
        path = template.format(v=v)
        status, answer = call(http_port, "GET", path)
        recorded[key] = {"request": f"GET {path}", "status": status, "body": answer}
    for kind in ("channel", "connection"):
        rows = recorded[kind + "s"]["body"]
        if rows:
            name = urllib.parse.quote(rows[0]["name"], safe="")
            status, answer = call(http_port, "GET", f"/api/{kind}s/{name}")
            recorded[kind] = {"request": f"GET /api/{kind}s/{{name}}", "status": status, "body": answer}
    return recorded


def main(amqp_port: int, http_port: int, out: str, settle: float = 12.0) -> None:
    conn = traffic(amqp_port, http_port)
    time.sleep(settle)  # two statistics intervals and more
    conn.process_data_events(0.1)
    recorded: dict[str, Any] = {
        "_about": (
            "Responses of RabbitMQ 3.10.8 (Debian 12 package, rabbitmq_management, rates_mode basic, "
            "collect_statistics_interval 5000) recorded by tools/record_management_fields.py: "
            "vhost 'fields', fanout exchange fx bound to durable queues busy and idle, 10 persistent "
            "confirmed publishes to fx, a get + reject(requeue) + get(no-ack) on busy, one API publish "
            "to fx and an API get of 2 from idle, then a consumer 'watcher' (prefetch 3) on busy, 12 s "
            "before the requests."
        )
    }
    recorded.update(responses(http_port))
    conn.close()
    call(http_port, "DELETE", f"/api/vhosts/{urllib.parse.quote(VHOST, safe='')}")
    with open(out, "w") as handle:
        json.dump(recorded, handle, indent=1, sort_keys=True)
        handle.write("\n")


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], *(float(a) for a in sys.argv[4:5]))
