// Small DOM helpers: build elements (text is always set as text, never parsed as HTML), format numbers,
// show notices.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      el.className = value;
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key in el && typeof value !== "string") {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? "" : value);
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function link(href, text) {
  return h("a", { href }, text);
}

export function num(value) {
  if (value === undefined || value === null || value === "") return "";
  if (typeof value !== "number") return String(value);
  return value.toLocaleString("en-US", { maximumFractionDigits: 1 });
}

export function rate(value) {
  if (typeof value !== "number") return "";
  return (value >= 100 ? Math.round(value) : Math.round(value * 10) / 10).toLocaleString("en-US") + "/s";
}

export function bytes(value) {
  if (typeof value !== "number") return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let n = value;
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

export function yesno(value) {
  return value ? "yes" : "no";
}

// A value at a dotted path ("message_stats.publish_details.rate"), or undefined.
export function pick(row, path) {
  let value = row;
  for (const part of path.split(".")) {
    if (value === undefined || value === null) return undefined;
    value = value[part];
  }
  return value;
}

export function toast(text, kind = "ok") {
  const box = document.getElementById("toasts");
  const el = h("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status" }, text);
  box.append(el);
  setTimeout(() => el.remove(), kind === "error" ? 8000 : 4000);
}

// Run an action from a button or form: errors become a notice, the button is disabled meanwhile.
export async function act(button, action, success) {
  if (button) button.disabled = true;
  try {
    const result = await action();
    if (success) toast(typeof success === "function" ? success(result) : success);
    return result;
  } catch (error) {
    toast(String(error.message || error), "error");
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

// A labelled form field; `input` is the element the value is read from.
export function field(label, input, hint) {
  return h("label", { class: "field" }, h("span", {}, label), input, hint ? h("small", {}, hint) : null);
}

export function section(title, ...children) {
  return h("section", { class: "panel" }, h("h2", {}, title), ...children);
}

// A table that scrolls inside its own box (a phone never scrolls the page sideways).
export function table(headers, rows, empty = "Nothing here.") {
  const head = h("tr", {}, headers.map((x) => (x instanceof Node ? x : h("th", {}, x))));
  const body = rows.length
    ? rows
    : [h("tr", {}, h("td", { colspan: String(headers.length), class: "muted" }, empty))];
  return h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, head), h("tbody", {}, body)));
}

export function json(value) {
  return JSON.stringify(value ?? {}, null, 0);
}

// A JSON object typed into a field ("" is {}); throws with a readable message.
export function parseObject(text, what) {
  if (!text.trim()) return {};
  let value;
  try {
    value = JSON.parse(text);
  } catch {
    throw new Error(`${what}: not valid JSON`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error(`${what}: must be a JSON object`);
  }
  return value;
}
