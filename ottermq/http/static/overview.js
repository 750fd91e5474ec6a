// Overview: totals, live charts of queued messages and message rates, the node and its listeners.

import { get } from "./api.js";
import { History, lineChart, samplePoints } from "./chart.js";
import { bytes, h, num, rate, section, table } from "./dom.js";

// The rates charted, with their labels: RabbitMQ's message_stats fields.
const RATES = [
  ["publish", "Publish"],
  ["deliver_get", "Deliver / get"],
  ["ack", "Ack"],
  ["confirm", "Confirm"],
  ["redeliver", "Redelivered"],
  ["return_unroutable", "Returned"],
  ["drop_unroutable", "Dropped"],
];
const LENGTHS = [
  ["messages_ready", "Ready"],
  ["messages_unacknowledged", "Unacked"],
  ["messages", "Total"],
];
// RabbitMQ's UI asks for the last 10 minutes in 5 s samples; a broker that does not keep samples ignores
// these and the UI keeps its own history while it is open.
const SAMPLES = "?lengths_age=600&lengths_incr=5&msg_rates_age=600&msg_rates_incr=5";

const history = new History();

export function chartSeries(stats, fields, points, { rates }) {
  return fields.map(([key, label]) => {
    const details = stats && stats[`${key}_details`];
    const sampled = samplePoints(details, { rate: false });
    if (rates) {
      // A rate with samples: the broker's own; else the rate it reports now, as the UI sampled it.
      const sampledRates = details && Array.isArray(details.samples) && details.samples.length > 1;
      return { label, points: sampledRates ? samplePoints(details, { rate: true }) : points(key), format: rate };
    }
    return { label, points: sampled.length > 1 ? sampled : points(key) };
  });
}

export async function render(main, _params, session) {
  const header = h("div", { class: "page-head" }, h("h1", {}, "Overview"));
  const alarms = h("div");
  const totals = h("div", { class: "cards" });
  const charts = h("div", { class: "charts" });
  const node = h("div");
  const listeners = h("div");
  main.append(header, alarms, totals, section("Charts", charts), node, listeners);

  async function refresh() {
    const ov = await get("/api/overview" + SAMPLES);
    const now = Date.now();
    const queued = ov.queue_totals || {};
    const stats = ov.message_stats || {};
    for (const [key] of LENGTHS) history.add(key, queued[key], now);
    for (const [key] of RATES) {
      const details = stats[`${key}_details`];
      if (details && typeof details.rate === "number") history.add(key, details.rate, now);
    }
    header.replaceChildren(
      ...[
      h("h1", {}, "Overview"),
      h("span", { class: "muted" }, `${ov.product_name || "OtterMQ"} ${ov.product_version || ""} · ${ov.node || ""}`),
      ov.cluster_name ? h("span", { class: "muted" }, ` · cluster ${ov.cluster_name}`) : null,
      ].filter(Boolean),
    );
    alarms.replaceChildren(
      ...(ov.alarms || []).map((alarm) =>
        h("p", { class: "alarm", role: "alert" }, `Alarm: ${typeof alarm === "string" ? alarm : JSON.stringify(alarm)} — publishers are blocked`),
      ),
    );
    const objects = ov.object_totals || {};
    const card = (label, value, href) =>
      h(href ? "a" : "div", { class: "card", href }, h("span", { class: "value" }, num(value)), h("span", { class: "label" }, label));
    totals.replaceChildren(
      ...[
      card("Connections", objects.connections, "#/connections"),
      card("Channels", objects.channels, "#/channels"),
      card("Exchanges", objects.exchanges, "#/exchanges"),
      card("Queues", objects.queues, "#/queues"),
      objects.consumers !== undefined ? card("Consumers", objects.consumers) : null,
      card("Ready", queued.messages_ready),
      card("Unacked", queued.messages_unacknowledged),
      card("Messages", queued.messages),
      ].filter(Boolean),
    );
    charts.replaceChildren(
      lineChart("Queued messages", chartSeries(queued, LENGTHS, (k) => history.points(k), { rates: false })),
      Object.keys(stats).length
        ? lineChart("Message rates", chartSeries(stats, RATES, (k) => history.points(k), { rates: true }), { format: rate })
        : h("figure", { class: "chart" }, h("figcaption", {}, "Message rates"), h("p", { class: "muted" }, "This user sees no broker-wide message rates (they need the monitoring or administrator tag).")),
    );
    listeners.replaceChildren(
      section(
        "Listeners",
        table(
          ["Protocol", "Address", "Port"],
          (ov.listeners || []).map((l) => h("tr", {}, h("td", {}, l.protocol), h("td", {}, l.ip_address), h("td", {}, String(l.port)))),
        ),
      ),
    );
    await refreshNode();
  }

  async function refreshNode() {
    const tags = session.me.tagList || [];
    if (!tags.includes("administrator") && !tags.includes("monitoring")) return;
    let nodes;
    try {
      nodes = await get("/api/nodes");
    } catch {
      return;
    }
    const rows = nodes.map((n) => {
      const pair = (used, limit, format) =>
        used === undefined ? "" : limit === undefined ? format(used) : `${format(used)} / ${format(limit)}`;
      return h(
        "tr",
        {},
        h("td", {}, n.name),
        h("td", {}, pair(n.mem_used, n.mem_limit, bytes)),
        h("td", {}, n.disk_free === undefined ? "" : `${bytes(n.disk_free)}${n.disk_free_limit !== undefined ? ` (limit ${bytes(n.disk_free_limit)})` : ""}`),
        h("td", {}, pair(n.fd_used, n.fd_total, num)),
        h("td", {}, n.uptime === undefined ? "" : `${Math.floor(n.uptime / 3600000)} h ${Math.floor((n.uptime % 3600000) / 60000)} min`),
      );
    });
    node.replaceChildren(section("Node", table(["Name", "Memory", "Disk free", "File descriptors", "Uptime"], rows)));
  }

  await refresh();
  return { refresh };
}
