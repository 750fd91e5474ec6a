// Connections (list, detail, close) and channels.

import { api, get, seg } from "./api.js";
import { act, bytes, field, h, num, pick, rate, section, table } from "./dom.js";
import { pagedList } from "./list.js";

function scoped(session, all, perVhost) {
  return () => (session.vhost ? perVhost(seg(session.vhost)) : all);
}

// X-Reason travels as a header: UTF-8 bytes sent as Latin-1 characters, which the broker decodes back.
function latin1(text) {
  return Array.from(new TextEncoder().encode(text), (b) => String.fromCharCode(b)).join("");
}

export async function closeConnection(name, reason, button) {
  if (!confirm(`Close connection ${name}?`)) return false;
  const headers = reason ? { "X-Reason": latin1(reason) } : {};
  const done = await act(
    button,
    () => api("DELETE", `/api/connections/${seg(name)}`, undefined, headers).then(() => true),
    `Connection ${name} closed`,
  );
  return Boolean(done);
}

const connectionHref = (name) => `#/connections/${seg(name)}`;

export async function connections(main, _params, session) {
  main.append(h("div", { class: "page-head" }, h("h1", {}, "Connections"), h("span", { class: "muted" }, session.vhost ? `in ${session.vhost}` : "all virtual hosts")));
  const list = pagedList({
    id: "connections",
    path: scoped(session, "/api/connections", (v) => `/api/vhosts/${v}/connections`),
    sort: "name",
    placeholder: "Filter connections",
    columns: [
      { title: "Name", sort: "name", cell: (c) => h("a", { href: connectionHref(c.name) }, c.name) },
      { title: "Virtual host", sort: "vhost", cell: (c) => c.vhost },
      { title: "User", sort: "user", cell: (c) => c.user },
      { title: "State", sort: "state", cell: (c) => c.state },
      { title: "Client", cell: (c) => [pick(c, "client_properties.product"), pick(c, "client_properties.version")].filter(Boolean).join(" ") },
      { title: "Channels", sort: "channels", class: "num", cell: (c) => num(c.channels) },
      { title: "From client", sort: "recv_oct_details.rate", class: "num", cell: (c) => rateOf(c, "recv_oct") },
      { title: "To client", sort: "send_oct_details.rate", class: "num", cell: (c) => rateOf(c, "send_oct") },
    ],
    actions: (c) =>
      h("button", { type: "button", class: "danger small", onclick: async (e) => (await closeConnection(c.name, "", e.target)) && list.refresh() }, "Close"),
    empty: "No connections.",
  });
  main.append(list.el);
  await list.refresh();
  return { refresh: list.refresh };
}

// Bytes per second of a connection counter when the broker reports it.
function rateOf(row, key) {
  const value = pick(row, `${key}_details.rate`);
  return typeof value === "number" ? `${bytes(value)}/s` : "";
}

function properties(row, keys) {
  return table(
    ["Property", "Value"],
    keys
      .filter(([key]) => pick(row, key) !== undefined)
      .map(([key, label, format]) => h("tr", {}, h("th", {}, label), h("td", {}, (format || String)(pick(row, key))))),
  );
}

export async function connection(main, params) {
  const name = params.name;
  const head = h("div", { class: "page-head" }, h("h1", {}, "Connection"), h("code", { class: "name" }, name));
  const info = h("div");
  const channelBox = h("div");
  const reason = h("input", { placeholder: "Closed via management plugin", "aria-label": "Reason" });
  const close = h("button", { type: "button", class: "danger" }, "Close connection");
  close.addEventListener("click", async () => {
    if (await closeConnection(name, reason.value, close)) location.hash = "#/connections";
  });
  main.append(head, info, channelBox, section("Close this connection", h("div", { class: "form-row" }, field("Reason (the client is told)", reason), close)));

  async function refresh() {
    let row;
    try {
      row = await get(`/api/connections/${seg(name)}`);
    } catch (error) {
      info.replaceChildren(h("p", { class: "error" }, error.status === 404 ? "This connection is closed." : error.message));
      channelBox.replaceChildren();
      return;
    }
    info.replaceChildren(
      section(
        "Details",
        properties(row, [
          ["user", "User"],
          ["vhost", "Virtual host"],
          ["state", "State"],
          ["protocol", "Protocol"],
          ["peer_host", "Peer host"],
          ["peer_port", "Peer port"],
          ["ssl", "TLS", (v) => (v ? "yes" : "no")],
          ["timeout", "Heartbeat (s)"],
          ["frame_max", "Frame max"],
          ["channel_max", "Channel max"],
          ["client_properties.product", "Client"],
          ["client_properties.version", "Client version"],
          ["client_properties.connection_name", "Client-given name"],
          ["recv_oct_details.rate", "From client", (v) => `${bytes(v)}/s`],
          ["send_oct_details.rate", "To client", (v) => `${bytes(v)}/s`],
        ]),
      ),
    );
    const channels = await get(`/api/connections/${seg(name)}/channels`);
    channelBox.replaceChildren(section("Channels", channelTable(channels)));
  }
  await refresh();
  return { refresh };
}

function channelTable(rows) {
  return table(
    ["Channel", "User", "State", "Consumers", "Unacked", "Prefetch", "Mode", "Publish"],
    rows.map((ch) =>
      h(
        "tr",
        {},
        h("td", {}, ch.name),
        h("td", {}, ch.user),
        h("td", {}, ch.state),
        h("td", { class: "num" }, num(ch.consumer_count)),
        h("td", { class: "num" }, num(ch.messages_unacknowledged)),
        h("td", { class: "num" }, num(ch.prefetch_count)),
        h("td", {}, [ch.confirm ? "confirm" : "", ch.transactional ? "tx" : ""].filter(Boolean).join(", ")),
        h("td", { class: "num" }, rate(pick(ch, "message_stats.publish_details.rate"))),
      ),
    ),
    "No channels.",
  );
}

export async function channels(main, _params, session) {
  main.append(h("div", { class: "page-head" }, h("h1", {}, "Channels"), h("span", { class: "muted" }, session.vhost ? `in ${session.vhost}` : "all virtual hosts")));
  const list = pagedList({
    id: "channels",
    path: scoped(session, "/api/channels", (v) => `/api/vhosts/${v}/channels`),
    sort: "name",
    placeholder: "Filter channels",
    columns: [
      { title: "Channel", sort: "name", cell: (ch) => h("a", { href: connectionHref(pick(ch, "connection_details.name") || "") }, ch.name) },
      { title: "Virtual host", sort: "vhost", cell: (ch) => ch.vhost },
      { title: "User", sort: "user", cell: (ch) => ch.user },
      { title: "State", sort: "state", cell: (ch) => ch.state },
      { title: "Mode", cell: (ch) => [ch.confirm ? "confirm" : "", ch.transactional ? "tx" : ""].filter(Boolean).join(", ") },
      { title: "Consumers", sort: "consumer_count", class: "num", cell: (ch) => num(ch.consumer_count) },
      { title: "Unacked", sort: "messages_unacknowledged", class: "num", cell: (ch) => num(ch.messages_unacknowledged) },
      { title: "Prefetch", sort: "prefetch_count", class: "num", cell: (ch) => num(ch.prefetch_count) },
      { title: "Publish", sort: "message_stats.publish_details.rate", class: "num", cell: (ch) => rate(pick(ch, "message_stats.publish_details.rate")) },
      { title: "Deliver", sort: "message_stats.deliver_get_details.rate", class: "num", cell: (ch) => rate(pick(ch, "message_stats.deliver_get_details.rate")) },
    ],
    empty: "No channels.",
  });
  main.append(list.el);
  await list.refresh();
  return { refresh: list.refresh };
}
