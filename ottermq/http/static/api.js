// The management API as the UI calls it: basic auth from the login form, kept in this tab's sessionStorage
// (gone when the tab closes), JSON in and out, RabbitMQ's error bodies turned into readable errors.

const KEY = "ottermq.credentials";

export class ApiError extends Error {
  constructor(status, body) {
    const reason = body && typeof body === "object" ? body.reason || body.error : body;
    super(`${status}: ${typeof reason === "string" ? reason : JSON.stringify(reason)}`);
    this.status = status;
    this.body = body;
  }
}

export function hasCredentials() {
  return sessionStorage.getItem(KEY) !== null;
}

export function forget() {
  sessionStorage.removeItem(KEY);
}

function basic(user, password) {
  // btoa takes Latin-1 only: encode UTF-8 first, as the server decodes the header.
  const bytes = new TextEncoder().encode(`${user}:${password}`);
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return "Basic " + btoa(binary);
}

let onUnauthorized = () => {};
export function setUnauthorizedHandler(handler) {
  onUnauthorized = handler;
}

async function send(method, path, body, authorization, headers = {}) {
  const init = {
    method,
    // X-Requested-With: the server then leaves out the basic-auth challenge, so a 401 reaches this
    // script instead of opening the browser's own login dialog.
    headers: { "X-Requested-With": "XMLHttpRequest", Authorization: authorization, ...headers },
    credentials: "omit",
    cache: "no-store",
  };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let value = null;
  if (text) {
    try {
      value = JSON.parse(text);
    } catch {
      value = text;
    }
  }
  if (!response.ok) throw new ApiError(response.status, value);
  return value;
}

// Check the credentials (GET /api/whoami) and keep them for this tab; the user's row on success.
export async function login(user, password) {
  const authorization = basic(user, password);
  const me = await send("GET", "/api/whoami", undefined, authorization);
  sessionStorage.setItem(KEY, authorization);
  return me;
}

export async function api(method, path, body, headers) {
  const authorization = sessionStorage.getItem(KEY);
  if (authorization === null) {
    onUnauthorized();
    throw new ApiError(401, { reason: "not logged in" });
  }
  try {
    return await send(method, path, body, authorization, headers);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401 && isLoginFailure(error.body)) {
      forget();
      onUnauthorized();
    }
    throw error;
  }
}

// A 401 for the credentials themselves (a deleted user, a changed password), not for one object the user
// may not touch (also 401 in RabbitMQ's API): only the first logs the tab out.
function isLoginFailure(body) {
  return body && typeof body === "object" && body.reason === "Login failed";
}

export const get = (path) => api("GET", path);

// A path segment: RabbitMQ's API wants "/" inside names as %2F.
export const seg = (name) => encodeURIComponent(name);

// A query string from an object, leaving out empty values.
export function query(params) {
  const parts = [];
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === "") continue;
    parts.push(`${encodeURIComponent(key)}=${encodeURIComponent(value)}`);
  }
  return parts.length ? "?" + parts.join("&") : "";
}
