// The web UI's shell: login, navigation (hash routes, so the server serves one page), the virtual host
// selector, and the refresh of the page shown every 5 s while the tab is visible.

import { ApiError, forget, get, hasCredentials, login, setUnauthorizedHandler } from "./api.js";
import { h, toast } from "./dom.js";
import * as overview from "./overview.js";
import * as live from "./live.js";
import * as exchanges from "./exchanges.js";
import * as queues from "./queues.js";
import * as admin from "./admin.js";

const REFRESH_MS = 5000;
const VHOST_KEY = "ottermq.vhost";

// [pattern, page, title]: ":x" segments are path parameters (percent-decoded).
const ROUTES = [
  ["", overview.render, "Overview"],
  ["connections", live.connections, "Connections"],
  ["connections/:name", live.connection, "Connection"],
  ["channels", live.channels, "Channels"],
  ["exchanges", exchanges.list, "Exchanges"],
  ["exchanges/:vhost/:name", exchanges.detail, "Exchange"],
  ["queues", queues.list, "Queues"],
  ["queues/:vhost/:name", queues.detail, "Queue"],
  ["admin", admin.users, "Users"],
  ["admin/users", admin.users, "Users"],
  ["admin/users/:name", admin.user, "User"],
  ["admin/vhosts", admin.vhosts, "Virtual hosts"],
  ["admin/permissions", admin.permissions, "Permissions"],
  ["admin/policies", admin.policies, "Policies"],
  ["admin/limits", admin.limits, "Limits"],
];

const NAV = [
  ["#/", "Overview", ""],
  ["#/connections", "Connections", "connections"],
  ["#/channels", "Channels", "channels"],
  ["#/exchanges", "Exchanges", "exchanges"],
  ["#/queues", "Queues", "queues"],
  ["#/admin", "Admin", "admin"],
];

const session = { me: null, vhosts: [], vhost: sessionStorage.getItem(VHOST_KEY) || "" };
let current = null; // {refresh, stop} of the page shown
let timer = 0;
let busy = false;

function route() {
  const hash = location.hash.replace(/^#\/?/, "");
  const path = hash.split("?")[0].replace(/\/$/, "");
  const parts = path ? path.split("/") : [];
  for (const [pattern, page, title] of ROUTES) {
    const want = pattern ? pattern.split("/") : [];
    if (want.length !== parts.length) continue;
    const params = {};
    let ok = true;
    want.forEach((piece, i) => {
      if (piece.startsWith(":")) {
        try {
          params[piece.slice(1)] = decodeURIComponent(parts[i]);
        } catch {
          ok = false; // a malformed %-escape typed into the address bar: not found
        }
      }
      else if (piece !== parts[i]) ok = false;
    });
    if (ok) return { page, title, params, section: parts[0] || "" };
  }
  return null;
}

function stopPage() {
  if (current && current.stop) current.stop();
  current = null;
}

async function show() {
  stopPage();
  const main = document.getElementById("main");
  if (!hasCredentials() || !session.me) {
    renderLogin(main);
    return;
  }
  const found = route();
  if (!found) {
    main.replaceChildren(h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/" }, "Back to the overview")));
    return;
  }
  document.title = `${found.title} · OtterMQ`;
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("active", a.dataset.section === found.section);
  }
  closeMenu();
  main.replaceChildren();
  try {
    current = (await found.page(main, found.params, session)) || {};
  } catch (error) {
    main.append(h("p", { class: "error" }, String(error.message || error)));
  }
}

async function tick() {
  if (busy || document.visibilityState !== "visible" || !current || !current.refresh) return;
  busy = true;
  try {
    await current.refresh();
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) console.warn(error);
  } finally {
    busy = false;
  }
}

function renderLogin(main) {
  document.getElementById("nav").hidden = true;
  document.getElementById("session").hidden = true;
  document.getElementById("menu-toggle").hidden = true;
  document.title = "Log in · OtterMQ";
  const user = h("input", { name: "username", autocomplete: "username", required: true, autofocus: true });
  const password = h("input", { name: "password", type: "password", autocomplete: "current-password" });
  const message = h("p", { class: "error", role: "alert" });
  const submit = h("button", { type: "submit" }, "Log in");
  const form = h(
    "form",
    { class: "login", id: "login-form" },
    h("h1", {}, "OtterMQ"),
    h("label", { class: "field" }, h("span", {}, "Username"), user),
    h("label", { class: "field" }, h("span", {}, "Password"), password),
    submit,
    message,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    message.textContent = "";
    try {
      session.me = await login(user.value, password.value);
      await start();
    } catch (error) {
      const status = error instanceof ApiError ? error.status : 0;
      message.textContent =
        status === 401
          ? error.body && error.body.reason === "Not management user"
            ? "This user may not use the management UI (it needs a management tag)."
            : "Login failed: wrong username or password."
          : status === 429
            ? "Too many logins from this address: wait a moment."
            : String(error.message || error);
      password.value = "";
      password.focus();
    } finally {
      submit.disabled = false;
    }
  });
  main.replaceChildren(form);
  user.focus();
}

async function loadVhosts() {
  try {
    const rows = await get("/api/vhosts?columns=name");
    session.vhosts = rows.map((row) => row.name);
  } catch {
    session.vhosts = [];
  }
  const select = document.getElementById("vhost-select");
  select.replaceChildren(
    h("option", { value: "" }, "All"),
    ...session.vhosts.map((name) => h("option", { value: name, selected: name === session.vhost }, name)),
  );
  if (session.vhost && !session.vhosts.includes(session.vhost)) setVhost("");
}

function setVhost(name) {
  session.vhost = name;
  sessionStorage.setItem(VHOST_KEY, name);
  document.getElementById("vhost-select").value = name;
}

async function start() {
  if (!session.me) {
    try {
      session.me = await get("/api/whoami");
    } catch {
      forget();
      session.me = null;
      await show();
      return;
    }
  }
  const tags = Array.isArray(session.me.tags) ? session.me.tags : String(session.me.tags || "").split(",");
  session.me.tagList = tags;
  const nav = document.getElementById("nav");
  const canAdmin = tags.includes("administrator") || tags.includes("policymaker");
  nav.replaceChildren(
    ...NAV.filter(([, , section]) => section !== "admin" || canAdmin).map(([href, text, section]) =>
      // A policymaker may change policies only: its admin link opens them.
      h("a", { href: section === "admin" && !tags.includes("administrator") ? "#/admin/policies" : href, dataset: { section } }, text),
    ),
  );
  nav.hidden = false;
  document.getElementById("session").hidden = false;
  document.getElementById("menu-toggle").hidden = false;
  document.getElementById("whoami").textContent = session.me.name;
  await loadVhosts();
  session.reloadVhosts = loadVhosts;
  clearInterval(timer);
  timer = setInterval(tick, REFRESH_MS);
  await show();
}

function closeMenu() {
  document.getElementById("top").classList.remove("open");
  document.getElementById("menu-toggle").setAttribute("aria-expanded", "false");
}

setUnauthorizedHandler(() => {
  if (!session.me) return;
  session.me = null;
  clearInterval(timer);
  toast("Logged out: the broker refused the credentials.", "error");
  show();
});

window.addEventListener("hashchange", show);
document.addEventListener("visibilitychange", tick);
document.getElementById("logout").addEventListener("click", () => {
  forget();
  session.me = null;
  clearInterval(timer);
  stopPage();
  location.hash = "#/";
  show();
});
document.getElementById("vhost-select").addEventListener("change", (event) => {
  setVhost(event.target.value);
  show();
});
document.getElementById("menu-toggle").addEventListener("click", () => {
  const top = document.getElementById("top");
  const open = top.classList.toggle("open");
  document.getElementById("menu-toggle").setAttribute("aria-expanded", String(open));
});

if (hasCredentials()) start();
else show();
