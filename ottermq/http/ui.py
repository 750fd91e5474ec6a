"""GET /: one self-contained HTML page (no external assets) showing the overview and the queues.

Strategy: the page is static; its script calls /api/overview and /api/queues every 5 s with the
browser's credentials (the browser asks for them on the first 401, as RabbitMQ's realm prompts).
"""

from __future__ import annotations

from typing import Final

PAGE: Final = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>OtterMQ</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
h1{font-size:1.4em}table{border-collapse:collapse;margin-top:1em}
td,th{border:1px solid #ccc;padding:.3em .7em;text-align:right}th{background:#eee}
td:first-child,th:first-child{text-align:left}#error{color:#b00}
</style></head><body>
<h1>OtterMQ <span id="version"></span></h1>
<div id="error"></div>
<table id="totals"></table>
<h2>Queues</h2>
<table><thead><tr><th>Virtual host</th><th>Name</th><th>Durable</th><th>Ready</th><th>Unacked</th>
<th>Total</th><th>Consumers</th></tr></thead><tbody id="queues"></tbody></table>
<script>
"use strict";
function cell(row, text) {
  const td = document.createElement("td"); td.textContent = text; row.appendChild(td);
}
async function api(path) {
  const response = await fetch(path, {credentials: "same-origin"});
  if (!response.ok) { throw new Error(path + ": " + response.status); }
  return response.json();
}
async function refresh() {
  try {
    const overview = await api("/api/overview");
    document.getElementById("version").textContent = overview.product_version;
    const totals = document.getElementById("totals");
    totals.replaceChildren();
    const figures = Object.assign({}, overview.object_totals, overview.queue_totals);
    for (const [name, value] of Object.entries(figures)) {
      const row = document.createElement("tr");
      const th = document.createElement("th"); th.textContent = name; row.appendChild(th);
      cell(row, value); totals.appendChild(row);
    }
    const body = document.getElementById("queues");
    body.replaceChildren();
    for (const q of await api("/api/queues")) {
      const row = document.createElement("tr");
      for (const value of [q.vhost, q.name, q.durable ? "yes" : "no", q.messages_ready,
                           q.messages_unacknowledged, q.messages, q.consumers]) { cell(row, value); }
      body.appendChild(row);
    }
    document.getElementById("error").textContent = "";
  } catch (error) {
    document.getElementById("error").textContent = String(error);
  }
}
refresh();
setInterval(refresh, 5000);
</script></body></html>
"""
