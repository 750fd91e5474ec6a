// Queues: the list (paged, filtered and sorted by the server: fast with 10,000 queues), declare, and the
// queue page: details, charts, consumers, bindings, publish, get, move, purge, delete.

import { api, get, seg } from "./api.js";
import { History, lineChart, samplePoints } from "./chart.js";
import { act, bytes, field, h, json, num, parseObject, pick, rate, section, table, toast } from "./dom.js";
import { DEFAULT_EXCHANGE, bindingTable, publishForm, unbind, vhostSelect } from "./exchanges.js";
import { pagedList } from "./list.js";

export const queuePath = (vhost, name) => `/api/queues/${seg(vhost)}/${seg(name)}`;
export const queueHref = (vhost, name) => `#/queues/${seg(vhost)}/${seg(name)}`;

// The columns the list asks for: a page of 500 queues stays a small reply.
const FIELDS = [
  "vhost", "name", "type", "durable", "auto_delete", "exclusive", "arguments", "policy", "state",
  "messages", "messages_ready", "messages_unacknowledged", "consumers",
  "message_stats.publish_details.rate", "message_stats.deliver_get_details.rate", "message_stats.ack_details.rate",
];

function features(q) {
  const out = [];
  if (q.durable) out.push("D");
  if (q.auto_delete) out.push("AD");
  if (q.exclusive) out.push("Excl");
  const args = q.arguments || {};
  const short = { "x-message-ttl": "TTL", "x-expires": "Exp", "x-max-length": "Lim", "x-max-length-bytes": "Lim B", "x-dead-letter-exchange": "DLX", "x-max-priority": "Pri", "x-single-active-consumer": "SAC", "x-delivery-limit": "DLim" };
  for (const key of Object.keys(args)) out.push(short[key] || key);
  return out.join(" ");
}

export async function list(main, _params, session) {
  main.append(h("div", { class: "page-head" }, h("h1", {}, "Queues"), h("span", { class: "muted" }, session.vhost ? `in ${session.vhost}` : "all virtual hosts")));
  const r = (q, k) => rate(pick(q, `message_stats.${k}_details.rate`));
  const listing = pagedList({
    id: "queues",
    path: () => (session.vhost ? `/api/queues/${seg(session.vhost)}` : "/api/queues"),
    fields: FIELDS,
    placeholder: "Filter queues",
    columns: [
      { title: "Virtual host", sort: "vhost", cell: (q) => q.vhost },
      { title: "Name", sort: "name", cell: (q) => h("a", { href: queueHref(q.vhost, q.name) }, q.name) },
      { title: "Type", sort: "type", cell: (q) => q.type || "classic" },
      { title: "Features", cell: (q) => features(q) },
      { title: "Policy", sort: "policy", cell: (q) => q.policy || "" },
      { title: "State", sort: "state", cell: (q) => q.state || "" },
      { title: "Ready", sort: "messages_ready", class: "num", cell: (q) => num(q.messages_ready) },
      { title: "Unacked", sort: "messages_unacknowledged", class: "num", cell: (q) => num(q.messages_unacknowledged) },
      { title: "Total", sort: "messages", class: "num", cell: (q) => num(q.messages) },
      { title: "Consumers", sort: "consumers", class: "num", cell: (q) => num(q.consumers) },
      { title: "Incoming", sort: "message_stats.publish_details.rate", class: "num", cell: (q) => r(q, "publish") },
      { title: "Deliver / get", sort: "message_stats.deliver_get_details.rate", class: "num", cell: (q) => r(q, "deliver_get") },
      { title: "Ack", sort: "message_stats.ack_details.rate", class: "num", cell: (q) => r(q, "ack") },
    ],
    empty: "No queues.",
  });
  main.append(listing.el, addQueue(session, listing.refresh));
  await listing.refresh();
  return { refresh: listing.refresh };
}

function addQueue(session, done) {
  const vhost = vhostSelect(session);
  const name = h("input", { name: "name", required: true });
  const durable = h("select", { name: "durable" }, h("option", { value: "true" }, "durable"), h("option", { value: "false" }, "transient"));
  const autoDelete = h("input", { type: "checkbox", name: "auto_delete" });
  const args = h("input", { name: "arguments", placeholder: '{"x-message-ttl": 60000}' });
  const submit = h("button", { type: "submit" }, "Add queue");
  const form = h(
    "form",
    { class: "stack", id: "add-queue" },
    h("div", { class: "form-row" }, vhost.field, field("Name", name), field("Durability", durable), h("label", { class: "inline" }, autoDelete, " auto delete")),
    field("Arguments (JSON)", args, "x-message-ttl, x-expires, x-max-length, x-max-length-bytes, x-overflow, x-dead-letter-exchange, x-dead-letter-routing-key, x-max-priority, x-single-active-consumer, x-delivery-limit"),
    submit,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    act(
      submit,
      async () => {
        await api("PUT", queuePath(vhost.select.value, name.value), {
          durable: durable.value === "true",
          auto_delete: autoDelete.checked,
          arguments: parseObject(args.value, "Arguments"),
        });
        name.value = "";
        await done();
      },
      "Queue declared.",
    );
  });
  return section("Add a queue", form);
}

// The rates a queue's page charts, when the broker reports them.
const QUEUE_RATES = [
  ["publish", "Publish"],
  ["deliver_get", "Deliver / get"],
  ["ack", "Ack"],
  ["redeliver", "Redelivered"],
];
const QUEUE_LENGTHS = [
  ["messages_ready", "Ready"],
  ["messages_unacknowledged", "Unacked"],
];
const SAMPLES = "?lengths_age=600&lengths_incr=5&msg_rates_age=600&msg_rates_incr=5";
const histories = new Map();

// The API's request body limit (1 MiB): a bigger message cannot be published back through it.
const MAX_MOVABLE_BYTES = 700 * 1024;
const MOVE_BATCH = 50;

// Move up to `count` messages from one queue to another through the HTTP API: the broker has no shovel,
// so each batch is looked at first (got and requeued, bodies truncated to nothing) to stop before a message
// too big for the API, then got with ack and published to the target through the default exchange. A
// message whose publish fails is put back at the tail of the source queue. Properties travel; the
// redelivered flag does not, and a per-message TTL starts again.
export async function moveMessages(vhost, from, to, count, { peek = true, progress = () => {} } = {}) {
  if (to === from) throw new Error("the target is this queue");
  await get(queuePath(vhost, to)).catch((error) => {
    throw new Error(error.status === 404 ? `no queue '${to}' in vhost '${vhost}'` : error.message);
  });
  const publishTo = (queue, m) =>
    api("POST", `/api/exchanges/${seg(vhost)}/${DEFAULT_EXCHANGE}/publish`, {
      routing_key: queue,
      properties: m.properties || {},
      payload: m.payload,
      payload_encoding: m.payload_encoding,
    });
  let moved = 0;
  while (moved < count) {
    let batch = Math.min(MOVE_BATCH, count - moved);
    if (peek) {
      const heads = await api("POST", `${queuePath(vhost, from)}/get`, { count: batch, ackmode: "reject_requeue_true", encoding: "auto", truncate: 0 });
      const fits = heads.findIndex((m) => m.payload_bytes > MAX_MOVABLE_BYTES);
      if (fits === 0) throw new Error(`moved ${moved}; the next message is ${bytes(heads[0].payload_bytes)}, more than the HTTP API carries: it stays in ${from}`);
      if (fits > 0) batch = fits;
      if (!heads.length) break;
    }
    const got = await api("POST", `${queuePath(vhost, from)}/get`, { count: batch, ackmode: "ack_requeue_false", encoding: "auto" });
    if (!got.length) break;
    for (let i = 0; i < got.length; i++) {
      try {
        const reply = await publishTo(to, got[i]);
        if (!reply || !reply.routed) throw new Error(`queue '${to}' did not take the message`);
        moved += 1;
      } catch (error) {
        let back = 0;
        for (const m of got.slice(i)) {
          try {
            await publishTo(from, m);
            back += 1;
          } catch {
            // Counted below: the operator is told how many could not be put back.
          }
        }
        const lost = got.length - i - back;
        throw new Error(
          `moved ${moved}, then: ${error.message}; ${back} message(s) put back at the tail of '${from}'` +
            (lost ? `, ${lost} could not be put back` : ""),
        );
      }
    }
    progress(moved);
  }
  return moved;
}

function messageCard(m, index) {
  const props = { ...(m.properties || {}) };
  return h(
    "div",
    { class: "message" },
    h("h3", {}, `Message ${index + 1}`),
    table(
      ["Field", "Value"],
      [
        ["Exchange", m.exchange || "(AMQP default)"],
        ["Routing key", m.routing_key],
        ["Redelivered", m.redelivered ? "yes" : "no"],
        ["Properties", json(props)],
        ["Payload", `${num(m.payload_bytes)} bytes, encoding ${m.payload_encoding}`],
        ["Queue after", `${num(m.message_count)} ready`],
      ].map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, v))),
    ),
    h("pre", { class: "payload" }, m.payload),
  );
}

export async function detail(main, params, session) {
  const { vhost, name } = params;
  const key = `${vhost}\u0000${name}`;
  if (!histories.has(key)) histories.set(key, new History());
  const history = histories.get(key);
  const head = h("div", { class: "page-head" }, h("h1", {}, "Queue"), h("code", { class: "name" }, name), h("span", { class: "muted" }, `in ${vhost}`));
  const info = h("div");
  const charts = h("div", { class: "charts" });
  const consumers = h("div");
  const bindings = h("div");
  main.append(head, info, section("Charts", charts), consumers, bindings);
  let current = null;

  // Bind from an exchange.
  const source = h("input", { name: "source", required: true, placeholder: "exchange" });
  const rkey = h("input", { name: "routing_key" });
  const bargs = h("input", { name: "arguments", placeholder: "{}" });
  const bindButton = h("button", { type: "submit" }, "Bind");
  const bindForm = h("form", { class: "form-row", id: "bind-form" }, field("From exchange", source), field("Routing key", rkey), field("Arguments (JSON)", bargs), bindButton);
  bindForm.addEventListener("submit", (event) => {
    event.preventDefault();
    act(
      bindButton,
      async () => {
        await api("POST", `/api/bindings/${seg(vhost)}/e/${seg(source.value)}/q/${seg(name)}`, { routing_key: rkey.value, arguments: parseObject(bargs.value, "Arguments") });
        await refresh();
      },
      "Bound.",
    );
  });

  // Get messages.
  const ackmode = h(
    "select",
    { name: "ackmode" },
    h("option", { value: "reject_requeue_true" }, "Nack, requeue"),
    h("option", { value: "ack_requeue_false" }, "Ack, remove from the queue"),
    h("option", { value: "reject_requeue_false" }, "Reject, no requeue"),
    h("option", { value: "ack_requeue_true" }, "Ack, requeue"),
  );
  const encoding = h("select", { name: "encoding" }, h("option", { value: "auto" }, "auto (string or base64)"), h("option", { value: "base64" }, "base64"));
  const count = h("input", { name: "count", type: "number", min: "1", value: "1" });
  const truncate = h("input", { name: "truncate", type: "number", min: "0", value: "50000" });
  const getButton = h("button", { type: "submit" }, "Get messages");
  const got = h("div", { class: "messages" });
  const getForm = h("form", { class: "stack", id: "get-form" }, h("div", { class: "form-row" }, field("Ack mode", ackmode), field("Encoding", encoding), field("Messages", count), field("Truncate (bytes)", truncate)), getButton, got);
  getForm.addEventListener("submit", (event) => {
    event.preventDefault();
    act(getButton, async () => {
      const rows = await api("POST", `${queuePath(vhost, name)}/get`, {
        count: Number(count.value),
        ackmode: ackmode.value,
        encoding: encoding.value,
        truncate: truncate.value === "" ? undefined : Number(truncate.value),
      });
      got.replaceChildren(...(rows.length ? rows.map(messageCard) : [h("p", { class: "muted" }, "Queue is empty.")]));
      await refresh();
    });
  });

  // Move messages.
  const moveTo = h("input", { name: "target", required: true, list: "queue-names" });
  const moveCount = h("input", { name: "move_count", type: "number", min: "1", placeholder: "all ready" });
  const moveButton = h("button", { type: "submit" }, "Move messages");
  const moveStatus = h("p", { class: "muted", id: "move-status" });
  const moveForm = h(
    "form",
    { class: "stack", id: "move-form" },
    h(
      "p",
      { class: "note" },
      "OtterMQ has no shovel: the UI moves messages itself, through the HTTP API. It gets each message with ack " +
        "from this queue and publishes it to the target through the default exchange, in batches of " + MOVE_BATCH +
        ". Properties and order are kept; the redelivered flag is not and a message TTL starts again. If a " +
        "publish fails, the messages of that batch not yet moved are put back at the tail of this queue. " +
        "Messages over about 700 KiB cannot travel through the API: the move stops before them. Keep this page open until it is done.",
    ),
    h("div", { class: "form-row" }, field("Target queue", moveTo), field("How many", moveCount)),
    moveButton,
    moveStatus,
  );
  moveForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const ready = current ? current.messages_ready : 0;
    const n = moveCount.value ? Number(moveCount.value) : ready;
    if (!n) {
      toast("Nothing to move: no ready messages.", "error");
      return;
    }
    if (!confirm(`Move ${n} message(s) from ${name} to ${moveTo.value}?`)) return;
    const peek = !(pick(current, "arguments.x-delivery-limit") || pick(current, "effective_policy_definition.delivery-limit"));
    act(
      moveButton,
      async () => {
        moveStatus.textContent = "Moving…";
        try {
          const moved = await moveMessages(vhost, name, moveTo.value, n, { peek, progress: (m) => (moveStatus.textContent = `Moved ${m} of ${n}…`) });
          moveStatus.textContent = `Moved ${moved} message(s) to ${moveTo.value}.`;
          return moved;
        } catch (error) {
          moveStatus.textContent = error.message;
          throw error;
        } finally {
          await refresh();
        }
      },
      (moved) => `Moved ${moved} message(s).`,
    );
  });

  const purge = h("button", { type: "button", class: "danger", id: "purge" }, "Purge messages");
  purge.addEventListener("click", async () => {
    if (!confirm(`Purge all ready messages of ${name}?`)) return;
    await act(purge, () => api("DELETE", `${queuePath(vhost, name)}/contents`), "Queue purged.");
    await refresh();
  });
  const ifEmpty = h("input", { type: "checkbox", name: "if_empty" });
  const ifUnused = h("input", { type: "checkbox", name: "if_unused" });
  const del = h("button", { type: "button", class: "danger", id: "delete-queue" }, "Delete queue");
  del.addEventListener("click", async () => {
    if (!confirm(`Delete queue ${name}?`)) return;
    const flags = [ifEmpty.checked ? "if-empty=true" : "", ifUnused.checked ? "if-unused=true" : ""].filter(Boolean).join("&");
    const ok = await act(del, () => api("DELETE", queuePath(vhost, name) + (flags ? "?" + flags : "")).then(() => true), "Queue deleted.");
    if (ok) location.hash = "#/queues";
  });

  main.append(
    section("Publish a message", publishForm(vhost, "", { routingKey: name, fixedKey: true, onPublished: () => refresh() })),
    section("Get messages", getForm),
    section("Move messages", moveForm),
    h("datalist", { id: "queue-names" }),
    section("Add a binding to this queue", bindForm),
    section(
      "Purge and delete",
      h("div", { class: "form-row" }, purge),
      h("div", { class: "form-row" }, h("label", { class: "inline" }, ifEmpty, " only if empty"), h("label", { class: "inline" }, ifUnused, " only if unused"), del),
    ),
  );
  moveTo.addEventListener("input", async () => {
    // Suggest target names from the server's filter (one small page, never the whole list).
    if (moveTo.value.length < 1) return;
    try {
      const page = await get(`/api/queues/${seg(vhost)}?page=1&page_size=20&columns=name&name=${encodeURIComponent(moveTo.value)}`);
      document.getElementById("queue-names").replaceChildren(...page.items.filter((q) => q.name !== name).map((q) => h("option", { value: q.name })));
    } catch {
      // Only a suggestion.
    }
  });

  async function refresh() {
    let q;
    try {
      q = await get(queuePath(vhost, name) + SAMPLES);
    } catch (error) {
      info.replaceChildren(h("p", { class: "error" }, error.status === 404 ? "This queue does not exist (any more)." : error.message));
      return;
    }
    current = q;
    const now = Date.now();
    for (const [k] of QUEUE_LENGTHS) history.add(k, q[k], now);
    const stats = q.message_stats || null;
    if (stats) for (const [k] of QUEUE_RATES) history.add(k, pick(stats, `${k}_details.rate`), now);
    const rows = [
      ["Type", q.type || "classic"],
      ["State", q.state],
      ["Features", features(q)],
      ["Arguments", json(q.arguments)],
      ["Policy", q.policy || ""],
      ["Operator policy", q.operator_policy || ""],
      ["Effective policy definition", q.effective_policy_definition ? json(q.effective_policy_definition) : ""],
      ["Exclusive owner", pick(q, "owner_pid_details.name") || ""],
      ["Consumers", num(q.consumers)],
      ["Consumer utilisation", typeof q.consumer_utilisation === "number" ? `${Math.round(q.consumer_utilisation * 100)}%` : ""],
      ["Ready", num(q.messages_ready)],
      ["Unacked", num(q.messages_unacknowledged)],
      ["Total", num(q.messages)],
      ["Message bytes", typeof q.message_bytes === "number" ? bytes(q.message_bytes) : ""],
      ["Memory", typeof q.memory === "number" ? bytes(q.memory) : ""],
      ["Head message timestamp", q.head_message_timestamp ? new Date(q.head_message_timestamp * 1000).toISOString() : ""],
      ["Publish", rate(pick(stats, "publish_details.rate"))],
      ["Deliver / get", rate(pick(stats, "deliver_get_details.rate"))],
      ["Ack", rate(pick(stats, "ack_details.rate"))],
    ].filter(([, v]) => v !== "" && v !== undefined && v !== null);
    info.replaceChildren(section("Details", table(["Property", "Value"], rows.map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, v))))));
    const lengths = QUEUE_LENGTHS.map(([k, label]) => {
      const sampled = samplePoints(q[`${k}_details`]);
      return { label, points: sampled.length > 1 ? sampled : history.points(k) };
    });
    charts.replaceChildren(
      lineChart("Queued messages", lengths),
      stats
        ? lineChart(
            "Message rates",
            QUEUE_RATES.map(([k, label]) => {
              const details = stats[`${k}_details`];
              const sampled = details && Array.isArray(details.samples) && details.samples.length > 1;
              return { label, points: sampled ? samplePoints(details, { rate: true }) : history.points(k), format: rate };
            }),
            { format: rate },
          )
        : h("figure", { class: "chart" }, h("figcaption", {}, "Message rates"), h("p", { class: "muted" }, "This broker reports no rates for this queue yet.")),
    );
    await Promise.all([refreshConsumers(q), refreshBindings()]);
  }

  async function refreshConsumers(q) {
    let rows = Array.isArray(q.consumer_details) ? q.consumer_details : [];
    if (!rows.length && q.consumers) {
      // Brokers that leave consumer_details empty still list consumers per vhost.
      const all = await get(`/api/consumers/${seg(vhost)}`).catch(() => []);
      rows = all.filter((c) => pick(c, "queue.name") === name);
    }
    consumers.replaceChildren(
      section(
        "Consumers",
        table(
          ["Channel", "Consumer tag", "Ack required", "Exclusive", "Prefetch", "Active", "Arguments"],
          rows.map((c) =>
            h(
              "tr",
              {},
              h("td", {}, h("a", { href: `#/connections/${seg(pick(c, "channel_details.connection_name") || "")}` }, pick(c, "channel_details.name") || "")),
              h("td", {}, c.consumer_tag),
              h("td", {}, c.ack_required ? "yes" : "no"),
              h("td", {}, c.exclusive ? "yes" : "no"),
              h("td", { class: "num" }, num(c.prefetch_count)),
              h("td", {}, c.active === false ? "waiting" : "yes"),
              h("td", {}, Object.keys(c.arguments || {}).length ? json(c.arguments) : ""),
            ),
          ),
          "No consumers.",
        ),
      ),
    );
  }

  async function refreshBindings() {
    const rows = await get(`${queuePath(vhost, name)}/bindings`);
    const onUnbind = async (b, button) => {
      if (confirm("Remove this binding?") && (await unbind(b, button)) !== undefined) await refresh();
    };
    bindings.replaceChildren(section("Bindings", bindingTable(rows, { side: "destination", onUnbind })));
  }

  await refresh();
  return { refresh };
}
