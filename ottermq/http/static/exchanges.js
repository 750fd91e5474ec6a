// Exchanges: list (paged by the server), declare, detail with bindings, publish a message, delete.

import { api, get, seg } from "./api.js";
import { act, field, h, json, parseObject, pick, rate, section, table } from "./dom.js";
import { pagedList } from "./list.js";

export const DEFAULT_EXCHANGE = "amq.default"; // the default exchange ("") in API paths
export const exchangePath = (vhost, name) => `/api/exchanges/${seg(vhost)}/${seg(name || DEFAULT_EXCHANGE)}`;
export const exchangeHref = (vhost, name) => `#/exchanges/${seg(vhost)}/${seg(name || DEFAULT_EXCHANGE)}`;
export const exchangeLabel = (name) => name || "(AMQP default)";

export function vhostSelect(session, label = "Virtual host") {
  const select = h(
    "select",
    { name: "vhost" },
    session.vhosts.map((v) => h("option", { value: v, selected: v === (session.vhost || "/") }, v)),
  );
  return { select, field: field(label, select) };
}

// The publish form of the exchange page and the queue page: properties as RabbitMQ's API takes them.
export function publishForm(vhost, exchange, { routingKey = "", fixedKey = false, onPublished } = {}) {
  const key = h("input", { name: "routing_key", value: routingKey, readOnly: fixedKey });
  const mode = h("select", { name: "delivery_mode" }, h("option", { value: "2" }, "2 - persistent"), h("option", { value: "1" }, "1 - transient"));
  const headers = h("input", { name: "headers", placeholder: '{"x-source": "ui"}' });
  const props = h("input", { name: "properties", placeholder: '{"content_type": "text/plain", "priority": 1}' });
  const payload = h("textarea", { name: "payload", rows: 4 });
  const encoding = h("select", { name: "payload_encoding" }, h("option", { value: "string" }, "string"), h("option", { value: "base64" }, "base64"));
  const submit = h("button", { type: "submit" }, "Publish message");
  const form = h(
    "form",
    { class: "stack publish-form" },
    h("div", { class: "form-row" }, field("Routing key", key), field("Delivery mode", mode), field("Payload encoding", encoding)),
    h("div", { class: "form-row" }, field("Headers (JSON)", headers), field("Other properties (JSON)", props)),
    field("Payload", payload),
    submit,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    act(
      submit,
      async () => {
        const properties = { ...parseObject(props.value, "Other properties"), delivery_mode: Number(mode.value) };
        const hdrs = parseObject(headers.value, "Headers");
        if (Object.keys(hdrs).length) properties.headers = hdrs;
        const reply = await api("POST", `${exchangePath(vhost, exchange)}/publish`, {
          routing_key: key.value,
          properties,
          payload: payload.value,
          payload_encoding: encoding.value,
        });
        if (onPublished) onPublished(reply);
        return reply;
      },
      (reply) => (reply && reply.routed ? "Message published." : "Message published, but not routed to any queue."),
    );
  });
  return form;
}

export async function list(main, _params, session) {
  main.append(h("div", { class: "page-head" }, h("h1", {}, "Exchanges"), h("span", { class: "muted" }, session.vhost ? `in ${session.vhost}` : "all virtual hosts")));
  const rates = (x, k) => rate(pick(x, `message_stats.${k}_details.rate`));
  const listing = pagedList({
    id: "exchanges",
    path: () => (session.vhost ? `/api/exchanges/${seg(session.vhost)}` : "/api/exchanges"),
    placeholder: "Filter exchanges",
    columns: [
      { title: "Virtual host", sort: "vhost", cell: (x) => x.vhost },
      { title: "Name", sort: "name", cell: (x) => h("a", { href: exchangeHref(x.vhost, x.name) }, exchangeLabel(x.name)) },
      { title: "Type", sort: "type", cell: (x) => x.type },
      { title: "Features", cell: (x) => features(x) },
      { title: "Policy", sort: "policy", cell: (x) => x.policy || "" },
      { title: "In", sort: "message_stats.publish_in_details.rate", class: "num", cell: (x) => rates(x, "publish_in") },
      { title: "Out", sort: "message_stats.publish_out_details.rate", class: "num", cell: (x) => rates(x, "publish_out") },
    ],
    empty: "No exchanges.",
  });
  main.append(listing.el, addExchange(session, listing.refresh));
  await listing.refresh();
  return { refresh: listing.refresh };
}

function features(x) {
  const out = [];
  if (x.durable) out.push("D");
  if (x.auto_delete) out.push("AD");
  if (x.internal) out.push("I");
  if (x.arguments && Object.keys(x.arguments).length) out.push("Args");
  return out.join(" ");
}

function addExchange(session, done) {
  const vhost = vhostSelect(session);
  const name = h("input", { name: "name", required: true });
  const type = h("select", { name: "type" }, ["direct", "fanout", "topic", "headers"].map((t) => h("option", { value: t }, t)));
  const durable = h("select", { name: "durable" }, h("option", { value: "true" }, "durable"), h("option", { value: "false" }, "transient"));
  const autoDelete = h("input", { type: "checkbox", name: "auto_delete" });
  const internal = h("input", { type: "checkbox", name: "internal" });
  const args = h("input", { name: "arguments", placeholder: '{"alternate-exchange": "ae"}' });
  const submit = h("button", { type: "submit" }, "Add exchange");
  const form = h(
    "form",
    { class: "stack", id: "add-exchange" },
    h("div", { class: "form-row" }, vhost.field, field("Name", name), field("Type", type), field("Durability", durable)),
    h("div", { class: "form-row" }, h("label", { class: "inline" }, autoDelete, " auto delete"), h("label", { class: "inline" }, internal, " internal"), field("Arguments (JSON)", args)),
    submit,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    act(
      submit,
      async () => {
        await api("PUT", exchangePath(vhost.select.value, name.value), {
          type: type.value,
          durable: durable.value === "true",
          auto_delete: autoDelete.checked,
          internal: internal.checked,
          arguments: parseObject(args.value, "Arguments"),
        });
        name.value = "";
        await done();
      },
      "Exchange declared.",
    );
  });
  return section("Add an exchange", form);
}

export function bindingTable(rows, { side, onUnbind }) {
  return table(
    [side === "source" ? "To" : "From", "Routing key", "Arguments", ""],
    rows.map((b) => {
      const other = side === "source" ? b.destination : b.source;
      const href =
        side === "source"
          ? b.destination_type === "queue"
            ? `#/queues/${seg(b.vhost)}/${seg(b.destination)}`
            : exchangeHref(b.vhost, b.destination)
          : exchangeHref(b.vhost, b.source);
      const unbind = b.source
        ? h("button", { type: "button", class: "small danger", onclick: (e) => onUnbind(b, e.target) }, "Unbind")
        : h("span", { class: "muted" }, "implicit");
      return h(
        "tr",
        {},
        h("td", {}, h("a", { href }, side === "source" ? `${b.destination_type} ${other}` : exchangeLabel(other))),
        h("td", {}, h("code", {}, b.routing_key)),
        h("td", {}, Object.keys(b.arguments || {}).length ? json(b.arguments) : ""),
        h("td", {}, unbind),
      );
    }),
    "No bindings.",
  );
}

export async function unbind(b, button) {
  const letter = b.destination_type === "queue" ? "q" : "e";
  const path = `/api/bindings/${seg(b.vhost)}/e/${seg(b.source || DEFAULT_EXCHANGE)}/${letter}/${seg(b.destination)}/${seg(b.properties_key)}`;
  return act(button, () => api("DELETE", path), "Binding removed.");
}

export async function detail(main, params) {
  const { vhost } = params;
  const name = params.name === DEFAULT_EXCHANGE ? "" : params.name;
  const info = h("div");
  const bindings = h("div");
  main.append(h("div", { class: "page-head" }, h("h1", {}, "Exchange"), h("code", { class: "name" }, exchangeLabel(name)), h("span", { class: "muted" }, `in ${vhost}`)), info, bindings);

  const destKind = h("select", { name: "destination_type" }, h("option", { value: "q" }, "queue"), h("option", { value: "e" }, "exchange"));
  const dest = h("input", { name: "destination", required: true });
  const key = h("input", { name: "routing_key" });
  const args = h("input", { name: "arguments", placeholder: "{}" });
  const bindButton = h("button", { type: "submit" }, "Bind");
  const bindForm = h("form", { class: "form-row" }, field("To", destKind), field("Name", dest), field("Routing key", key), field("Arguments (JSON)", args), bindButton);
  bindForm.addEventListener("submit", (event) => {
    event.preventDefault();
    act(
      bindButton,
      async () => {
        await api("POST", `/api/bindings/${seg(vhost)}/e/${seg(name || DEFAULT_EXCHANGE)}/${destKind.value}/${seg(dest.value)}`, {
          routing_key: key.value,
          arguments: parseObject(args.value, "Arguments"),
        });
        await refresh();
      },
      "Bound.",
    );
  });
  const del = h("button", { type: "button", class: "danger" }, "Delete exchange");
  const ifUnused = h("input", { type: "checkbox" });
  del.addEventListener("click", async () => {
    if (!confirm(`Delete exchange ${exchangeLabel(name)}?`)) return;
    const ok = await act(del, () => api("DELETE", exchangePath(vhost, name) + (ifUnused.checked ? "?if-unused=true" : "")).then(() => true), "Exchange deleted.");
    if (ok) location.hash = "#/exchanges";
  });
  // The default and amq.* exchanges take no bindings and cannot be deleted.
  const own = name && !name.startsWith("amq.");
  main.append(section("Publish a message", publishForm(vhost, name)));
  if (own) {
    main.append(
      section("Add a binding from this exchange", bindForm),
      section("Delete", h("div", { class: "form-row" }, h("label", { class: "inline" }, ifUnused, " only if unused"), del)),
    );
  }

  async function refresh() {
    let x;
    try {
      x = await get(exchangePath(vhost, name));
    } catch (error) {
      info.replaceChildren(h("p", { class: "error" }, error.status === 404 ? "No such exchange." : error.message));
      return;
    }
    const stats = (k) => pick(x, `message_stats.${k}_details.rate`);
    info.replaceChildren(
      section(
        "Details",
        table(
          ["Property", "Value"],
          [
            ["Type", x.type],
            ["Durable", x.durable ? "yes" : "no"],
            ["Auto delete", x.auto_delete ? "yes" : "no"],
            ["Internal", x.internal ? "yes" : "no"],
            ["Arguments", json(x.arguments)],
            ["Policy", x.policy || ""],
            ["Publish in", rate(stats("publish_in"))],
            ["Publish out", rate(stats("publish_out"))],
          ]
            .filter(([, v]) => v !== "")
            .map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, v))),
        ),
      ),
    );
    const [from, to] = await Promise.all([
      get(`${exchangePath(vhost, name)}/bindings/source`),
      get(`${exchangePath(vhost, name)}/bindings/destination`),
    ]);
    const onUnbind = async (b, button) => {
      if (confirm("Remove this binding?") && (await unbind(b, button)) !== undefined) await refresh();
    };
    bindings.replaceChildren(section("Bindings from this exchange", bindingTable(from, { side: "source", onUnbind })));
    if (to.length) bindings.append(section("Bindings to this exchange", bindingTable(to, { side: "destination", onUnbind })));
  }
  await refresh();
  return { refresh };
}
