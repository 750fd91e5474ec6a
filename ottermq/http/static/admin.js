// Admin: users (tags, password, permissions), virtual hosts, permissions (and topic permissions),
// policies and operator policies, vhost and user limits.

import { ApiError, api, get, seg } from "./api.js";
import { act, field, h, json, num, parseObject, section, table } from "./dom.js";
import { vhostSelect } from "./exchanges.js";

const TABS = [
  ["#/admin/users", "Users", "users"],
  ["#/admin/vhosts", "Virtual hosts", "vhosts"],
  ["#/admin/permissions", "Permissions", "permissions"],
  ["#/admin/policies", "Policies", "policies"],
  ["#/admin/limits", "Limits", "limits"],
];

function frame(main, active, title) {
  main.append(
    h("nav", { class: "tabs" }, TABS.map(([href, text, key]) => h("a", { href, class: key === active ? "active" : "" }, text))),
    h("div", { class: "page-head" }, h("h1", {}, title)),
  );
}

function form(id, rows, label, onSubmit) {
  const submit = h("button", { type: "submit" }, label);
  const el = h("form", { class: "stack", id }, ...rows, submit);
  el.addEventListener("submit", (event) => {
    event.preventDefault();
    onSubmit(submit);
  });
  return el;
}

function deleteButton(what, path, after) {
  return h(
    "button",
    {
      type: "button",
      class: "small danger",
      onclick: async (event) => {
        if (!confirm(`Delete ${what}?`)) return;
        if ((await act(event.target, () => api("DELETE", path).then(() => true), `Deleted ${what}.`)) && after) await after();
      },
    },
    "Delete",
  );
}

function userSelect() {
  return h("select", { name: "user" });
}

async function fillUsers(select, selected) {
  const users = await get("/api/users?columns=name").catch(() => []);
  select.replaceChildren(...users.map((u) => h("option", { value: u.name, selected: u.name === selected }, u.name)));
}

// -- users ------------------------------------------------------------------------------------------------

const TAG_HELP = "administrator, monitoring, policymaker, management (comma separated; none: AMQP only)";

export async function users(main, _params, session) {
  frame(main, "users", "Users");
  const box = h("div", { class: "panel" });
  const name = h("input", { name: "username", required: true, autocomplete: "off" });
  const password = h("input", { name: "password", type: "password", autocomplete: "new-password" });
  const tags = h("input", { name: "tags", placeholder: "management" });
  main.append(
    box,
    section(
      "Add or update a user",
      form("add-user", [h("div", { class: "form-row" }, field("Username", name), field("Password", password, "leave empty to keep an existing user's"), field("Tags", tags, TAG_HELP))], "Add user", (button) =>
        act(
          button,
          async () => {
            const body = { tags: tags.value };
            if (password.value) body.password = password.value;
            await api("PUT", `/api/users/${seg(name.value)}`, body);
            name.value = password.value = tags.value = "";
            await refresh();
          },
          "User saved.",
        ),
      ),
    ),
  );
  async function refresh() {
    const rows = await get("/api/users");
    box.replaceChildren(
      table(
        ["Name", "Tags", "Password", ""],
        rows.map((u) =>
          h(
            "tr",
            {},
            h("td", {}, h("a", { href: `#/admin/users/${seg(u.name)}` }, u.name)),
            h("td", {}, (Array.isArray(u.tags) ? u.tags : [u.tags]).join(", ")),
            h("td", {}, u.password_hash ? "set" : "none"),
            h("td", {}, u.name === session.me.name ? h("span", { class: "muted" }, "you") : deleteButton(`user ${u.name}`, `/api/users/${seg(u.name)}`, refresh)),
          ),
        ),
      ),
    );
  }
  await refresh();
  return { refresh };
}

export async function user(main, params, session) {
  const name = params.name;
  frame(main, "users", `User ${name}`);
  const info = h("div");
  const perms = h("div");
  const tags = h("input", { name: "tags" });
  const password = h("input", { name: "password", type: "password", autocomplete: "new-password" });
  const vhost = vhostSelect(session);
  const configure = h("input", { name: "configure", value: ".*" });
  const write = h("input", { name: "write", value: ".*" });
  const read = h("input", { name: "read", value: ".*" });
  main.append(
    info,
    section(
      "Update",
      form("update-user", [h("div", { class: "form-row" }, field("Tags", tags, TAG_HELP), field("New password", password, "empty: unchanged"))], "Update user", (button) =>
        act(
          button,
          async () => {
            const body = { tags: tags.value };
            if (password.value) body.password = password.value;
            await api("PUT", `/api/users/${seg(name)}`, body);
            password.value = "";
            await refresh();
          },
          "User updated.",
        ),
      ),
    ),
    perms,
    section(
      "Set permission",
      form("user-permission", [h("div", { class: "form-row" }, vhost.field, field("Configure", configure), field("Write", write), field("Read", read))], "Set permission", (button) =>
        act(
          button,
          async () => {
            await api("PUT", `/api/permissions/${seg(vhost.select.value)}/${seg(name)}`, { configure: configure.value, write: write.value, read: read.value });
            await refresh();
          },
          "Permission set.",
        ),
      ),
    ),
  );
  let filled = false;
  async function refresh() {
    const u = await get(`/api/users/${seg(name)}`);
    const tagList = Array.isArray(u.tags) ? u.tags : String(u.tags || "").split(",");
    if (!filled) {
      tags.value = tagList.join(",");
      filled = true;
    }
    info.replaceChildren(table(["Property", "Value"], [h("tr", {}, h("th", {}, "Tags"), h("td", {}, tagList.join(", "))), h("tr", {}, h("th", {}, "Hashing"), h("td", {}, u.hashing_algorithm || ""))]));
    const rows = await get(`/api/users/${seg(name)}/permissions`);
    perms.replaceChildren(section("Permissions", permissionTable(rows, refresh)));
  }
  await refresh();
  return { refresh };
}

function permissionTable(rows, after) {
  return table(
    ["Virtual host", "User", "Configure", "Write", "Read", ""],
    rows.map((p) =>
      h(
        "tr",
        {},
        h("td", {}, p.vhost),
        h("td", {}, p.user),
        h("td", {}, h("code", {}, p.configure)),
        h("td", {}, h("code", {}, p.write)),
        h("td", {}, h("code", {}, p.read)),
        h("td", {}, deleteButton(`the permission of ${p.user} in ${p.vhost}`, `/api/permissions/${seg(p.vhost)}/${seg(p.user)}`, after)),
      ),
    ),
    "No permissions.",
  );
}

// -- vhosts -----------------------------------------------------------------------------------------------

export async function vhosts(main, _params, session) {
  frame(main, "vhosts", "Virtual hosts");
  const box = h("div", { class: "panel" });
  const name = h("input", { name: "vhost_name", required: true });
  main.append(
    box,
    section(
      "Add a virtual host",
      form("add-vhost", [h("div", { class: "form-row" }, field("Name", name))], "Add virtual host", (button) =>
        act(
          button,
          async () => {
            await api("PUT", `/api/vhosts/${seg(name.value)}`, {});
            name.value = "";
            await refresh();
            if (session.reloadVhosts) await session.reloadVhosts();
          },
          "Virtual host added.",
        ),
      ),
    ),
  );
  async function refresh() {
    const rows = await get("/api/vhosts");
    box.replaceChildren(
      table(
        ["Name", "Ready", "Unacked", "Total", "Publish", ""],
        rows.map((v) =>
          h(
            "tr",
            {},
            h("td", {}, v.name),
            h("td", { class: "num" }, num(v.messages_ready)),
            h("td", { class: "num" }, num(v.messages_unacknowledged)),
            h("td", { class: "num" }, num(v.messages)),
            h("td", { class: "num" }, v.message_stats && v.message_stats.publish_details ? `${num(v.message_stats.publish_details.rate)}/s` : ""),
            h("td", {}, deleteButton(`virtual host ${v.name} and everything in it`, `/api/vhosts/${seg(v.name)}`, async () => {
              await refresh();
              if (session.reloadVhosts) await session.reloadVhosts();
            })),
          ),
        ),
      ),
    );
  }
  await refresh();
  return { refresh };
}

// -- permissions ------------------------------------------------------------------------------------------

// A GET that answers null when the endpoint does not exist on this broker (404), so a page can say so.
async function optional(path) {
  try {
    return await get(path);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null;
    throw error;
  }
}

export async function permissions(main, _params, session) {
  frame(main, "permissions", "Permissions");
  const box = h("div", { class: "panel" });
  const topicBox = h("div");
  const who = userSelect();
  const vhost = vhostSelect(session);
  const configure = h("input", { name: "configure", value: ".*" });
  const write = h("input", { name: "write", value: ".*" });
  const read = h("input", { name: "read", value: ".*" });
  const tWho = userSelect();
  const tVhost = vhostSelect(session);
  const tExchange = h("input", { name: "exchange", value: "amq.topic" });
  const tWrite = h("input", { name: "topic_write", value: ".*" });
  const tRead = h("input", { name: "topic_read", value: ".*" });
  main.append(
    box,
    section(
      "Set permission",
      form("set-permission", [h("div", { class: "form-row" }, field("User", who), vhost.field, field("Configure", configure), field("Write", write), field("Read", read))], "Set permission", (button) =>
        act(
          button,
          async () => {
            await api("PUT", `/api/permissions/${seg(vhost.select.value)}/${seg(who.value)}`, { configure: configure.value, write: write.value, read: read.value });
            await refresh();
          },
          "Permission set.",
        ),
      ),
    ),
    topicBox,
  );
  const topicForm = section(
    "Set topic permission",
    form("set-topic-permission", [h("div", { class: "form-row" }, field("User", tWho), tVhost.field, field("Exchange", tExchange), field("Write", tWrite), field("Read", tRead))], "Set topic permission", (button) =>
      act(
        button,
        async () => {
          await api("PUT", `/api/topic-permissions/${seg(tVhost.select.value)}/${seg(tWho.value)}`, { exchange: tExchange.value, write: tWrite.value, read: tRead.value });
          await refresh();
        },
        "Topic permission set.",
      ),
    ),
  );
  await Promise.all([fillUsers(who), fillUsers(tWho)]);
  async function refresh() {
    box.replaceChildren(permissionTable(await get("/api/permissions"), refresh));
    const topic = await optional("/api/topic-permissions");
    if (topic === null) {
      topicBox.replaceChildren(section("Topic permissions", h("p", { class: "muted" }, "This broker has no topic permissions API.")));
      return;
    }
    topicBox.replaceChildren(
      section(
        "Topic permissions",
        table(
          ["Virtual host", "User", "Exchange", "Write", "Read", ""],
          topic.map((p) =>
            h(
              "tr",
              {},
              h("td", {}, p.vhost),
              h("td", {}, p.user),
              h("td", {}, p.exchange),
              h("td", {}, h("code", {}, p.write)),
              h("td", {}, h("code", {}, p.read)),
              h("td", {}, deleteButton(`the topic permissions of ${p.user} in ${p.vhost}`, `/api/topic-permissions/${seg(p.vhost)}/${seg(p.user)}`, refresh)),
            ),
          ),
          "No topic permissions.",
        ),
      ),
      topicForm,
    );
  }
  await refresh();
  return { refresh };
}

// -- policies ---------------------------------------------------------------------------------------------

const POLICY_KEYS =
  "message-ttl, expires, max-length, max-length-bytes, overflow, dead-letter-exchange, dead-letter-routing-key, " +
  "max-priority, alternate-exchange, delivery-limit, consumer-timeout";

export async function policies(main, _params, session) {
  frame(main, "policies", "Policies");
  const box = h("div");
  const opBox = h("div");
  const kind = h("select", { name: "kind" }, h("option", { value: "policies" }, "policy"), h("option", { value: "operator-policies" }, "operator policy"));
  const vhost = vhostSelect(session);
  const name = h("input", { name: "policy_name", required: true });
  const pattern = h("input", { name: "pattern", required: true, placeholder: "^orders\\." });
  const applyTo = h("select", { name: "apply-to" }, ["queues", "exchanges", "all"].map((v) => h("option", { value: v }, v)));
  const priority = h("input", { name: "priority", type: "number", value: "0" });
  const definition = h("textarea", { name: "definition", rows: 3, placeholder: '{"max-length": 1000, "dead-letter-exchange": "dlx"}' });
  main.append(
    section("Policies", box),
    section("Operator policies", opBox),
    section(
      "Add or update a policy",
      form(
        "add-policy",
        [
          h("div", { class: "form-row" }, field("Kind", kind), vhost.field, field("Name", name), field("Pattern (regex)", pattern), field("Apply to", applyTo), field("Priority", priority)),
          field("Definition (JSON)", definition, POLICY_KEYS),
        ],
        "Save policy",
        (button) =>
          act(
            button,
            async () => {
              await api("PUT", `/api/${kind.value}/${seg(vhost.select.value)}/${seg(name.value)}`, {
                pattern: pattern.value,
                "apply-to": applyTo.value,
                priority: Number(priority.value || 0),
                definition: parseObject(definition.value, "Definition"),
              });
              await refresh();
            },
            "Policy saved.",
          ),
      ),
    ),
  );
  const policyTable = (rows, kindPath) =>
    table(
      ["Virtual host", "Name", "Pattern", "Apply to", "Priority", "Definition", ""],
      rows.map((p) =>
        h(
          "tr",
          {},
          h("td", {}, p.vhost),
          h("td", {}, p.name),
          h("td", {}, h("code", {}, p.pattern)),
          h("td", {}, p["apply-to"]),
          h("td", { class: "num" }, num(p.priority)),
          h("td", {}, h("code", {}, json(p.definition))),
          h("td", {}, deleteButton(`policy ${p.name}`, `/api/${kindPath}/${seg(p.vhost)}/${seg(p.name)}`, refresh)),
        ),
      ),
      "None.",
    );
  async function refresh() {
    const path = (base) => (session.vhost ? `${base}/${seg(session.vhost)}` : base);
    box.replaceChildren(policyTable(await get(path("/api/policies")), "policies"));
    const ops = await get(path("/api/operator-policies")).catch((error) => error);
    opBox.replaceChildren(ops instanceof Error ? h("p", { class: "muted" }, ops.message) : policyTable(ops, "operator-policies"));
  }
  await refresh();
  return { refresh };
}

// -- limits -----------------------------------------------------------------------------------------------

export async function limits(main, _params, session) {
  frame(main, "limits", "Limits");
  const vbox = h("div");
  const ubox = h("div");
  const vhost = vhostSelect(session);
  const vname = h("select", { name: "vhost_limit" }, h("option", { value: "max-connections" }, "max-connections"), h("option", { value: "max-queues" }, "max-queues"));
  const vvalue = h("input", { name: "vhost_limit_value", type: "number", min: "-1", required: true });
  const who = userSelect();
  const uname = h("select", { name: "user_limit" }, h("option", { value: "max-connections" }, "max-connections"), h("option", { value: "max-channels" }, "max-channels"));
  const uvalue = h("input", { name: "user_limit_value", type: "number", min: "-1", required: true });
  main.append(
    section("Virtual host limits", vbox),
    section(
      "Set a virtual host limit",
      form("set-vhost-limit", [h("div", { class: "form-row" }, vhost.field, field("Limit", vname), field("Value", vvalue, "-1: no limit"))], "Set limit", (button) =>
        act(
          button,
          async () => {
            await api("PUT", `/api/vhost-limits/${seg(vhost.select.value)}/${seg(vname.value)}`, { value: Number(vvalue.value) });
            await refresh();
          },
          "Limit set.",
        ),
      ),
    ),
    section("User limits", ubox),
    section(
      "Set a user limit",
      form("set-user-limit", [h("div", { class: "form-row" }, field("User", who), field("Limit", uname), field("Value", uvalue, "-1: no limit"))], "Set limit", (button) =>
        act(
          button,
          async () => {
            await api("PUT", `/api/user-limits/${seg(who.value)}/${seg(uname.value)}`, { value: Number(uvalue.value) });
            await refresh();
          },
          "Limit set.",
        ),
      ),
    ),
  );
  await fillUsers(who);
  const limitRows = (rows, key, base) =>
    rows.flatMap((row) =>
      Object.entries(row.value || {}).map(([limit, value]) =>
        h(
          "tr",
          {},
          h("td", {}, row[key]),
          h("td", {}, limit),
          h("td", { class: "num" }, num(value)),
          h("td", {}, deleteButton(`limit ${limit} of ${row[key]}`, `${base}/${seg(row[key])}/${seg(limit)}`, refresh)),
        ),
      ),
    );
  async function refresh() {
    const [v, u] = await Promise.all([optional("/api/vhost-limits"), optional("/api/user-limits")]);
    vbox.replaceChildren(v === null ? h("p", { class: "muted", id: "no-vhost-limits" }, "This broker has no vhost limits API.") : table(["Virtual host", "Limit", "Value", ""], limitRows(v, "vhost", "/api/vhost-limits"), "No limits."));
    ubox.replaceChildren(u === null ? h("p", { class: "muted" }, "This broker has no user limits API.") : table(["User", "Limit", "Value", ""], limitRows(u, "user", "/api/user-limits"), "No limits."));
  }
  await refresh();
  return { refresh };
}
