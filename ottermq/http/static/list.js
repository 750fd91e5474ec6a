// A list the server pages, filters and sorts (RabbitMQ's page, page_size, name, use_regex, sort,
// sort_reverse, columns): the browser never holds more than one page, so 10,000 queues cost one page.

import { ApiError, get, query } from "./api.js";
import { h } from "./dom.js";

const PAGE_SIZES = [20, 50, 100, 500];
// Paging, filter and sort of each list, kept while the tab lives (back to the queues page finds them).
const states = new Map();

// options: {id, path: () => "/api/queues/...", columns: [{title, sort?, cell: row => node|text}],
//           fields?: [API columns to ask for], empty?, actions?: row => node}
export function pagedList(options) {
  const state = states.get(options.id) || {
    page: 1,
    pageSize: options.pageSize || 50,
    name: "",
    regex: false,
    sort: options.sort || "",
    reverse: false,
  };
  states.set(options.id, state);

  const filter = h("input", {
    type: "search",
    placeholder: options.placeholder || "Filter by name",
    value: state.name,
    "aria-label": "Filter by name",
    class: "filter",
  });
  const regex = h("input", { type: "checkbox", checked: state.regex });
  const size = h(
    "select",
    { "aria-label": "Page size" },
    PAGE_SIZES.map((n) => h("option", { value: String(n), selected: n === state.pageSize }, `${n} per page`)),
  );
  const summary = h("span", { class: "summary muted" });
  const pager = h("div", { class: "pager" });
  const thead = h("thead");
  const tbody = h("tbody");
  const status = h("p", { class: "muted list-status" });
  const el = h(
    "div",
    { class: "paged-list", dataset: { list: options.id } },
    h(
      "div",
      { class: "list-controls" },
      filter,
      h("label", { class: "inline" }, regex, " regex"),
      size,
      summary,
    ),
    h("div", { class: "table-wrap" }, h("table", {}, thead, tbody)),
    status,
    pager,
  );

  let timer = 0;
  let generation = 0;
  filter.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      state.name = filter.value;
      state.page = 1;
      refresh();
    }, 250);
  });
  regex.addEventListener("change", () => {
    state.regex = regex.checked;
    state.page = 1;
    refresh();
  });
  size.addEventListener("change", () => {
    state.pageSize = Number(size.value);
    state.page = 1;
    refresh();
  });

  function header() {
    const cells = options.columns.map((column) => {
      if (!column.sort) return h("th", {}, column.title);
      const active = state.sort === column.sort;
      const arrow = active ? (state.reverse ? " ▼" : " ▲") : "";
      return h(
        "th",
        { class: "sortable", "aria-sort": active ? (state.reverse ? "descending" : "ascending") : null },
        h(
          "button",
          {
            type: "button",
            class: "link",
            onclick: () => {
              if (state.sort === column.sort) state.reverse = !state.reverse;
              else {
                state.sort = column.sort;
                state.reverse = false;
              }
              refresh();
            },
          },
          column.title + arrow,
        ),
      );
    });
    if (options.actions) cells.push(h("th", {}, ""));
    thead.replaceChildren(h("tr", {}, cells));
  }

  function go(page) {
    state.page = page;
    refresh();
  }

  function renderPager(reply) {
    const last = Math.max(1, reply.page_count || 1);
    const button = (label, page, disabled, title) =>
      h("button", { type: "button", disabled, title, onclick: () => go(page) }, label);
    pager.replaceChildren(
      button("«", 1, state.page <= 1, "First page"),
      button("‹", state.page - 1, state.page <= 1, "Previous page"),
      h("span", { class: "page-of" }, `Page ${state.page} of ${last}`),
      button("›", state.page + 1, state.page >= last, "Next page"),
      button("»", last, state.page >= last, "Last page"),
    );
  }

  async function refresh() {
    const mine = ++generation;
    header();
    const params = {
      page: state.page,
      page_size: state.pageSize,
      name: state.name,
      use_regex: state.regex && state.name ? "true" : "",
      sort: state.sort,
      sort_reverse: state.reverse ? "true" : "",
      columns: options.fields ? options.fields.join(",") : "",
    };
    const started = performance.now();
    let reply;
    try {
      reply = await get(options.path() + query(params));
    } catch (error) {
      if (mine !== generation) return;
      if (error instanceof ApiError && error.body && error.body.error === "page_out_of_range" && state.page > 1) {
        state.page = 1; // the list shrank under the page shown
        return refresh();
      }
      status.textContent = String(error.message || error);
      status.className = "error list-status";
      return;
    }
    if (mine !== generation) return; // a newer request (typing in the filter) answers instead
    const elapsed = Math.round(performance.now() - started);
    el.dataset.requestMs = String(elapsed);
    const items = Array.isArray(reply) ? reply : reply.items || [];
    const rows = items.map((row) => {
      const cells = options.columns.map((column) => h("td", { class: column.class }, column.cell(row)));
      if (options.actions) cells.push(h("td", { class: "actions" }, options.actions(row)));
      return h("tr", {}, cells);
    });
    if (!rows.length) {
      const span = options.columns.length + (options.actions ? 1 : 0);
      rows.push(h("tr", {}, h("td", { colspan: String(span), class: "muted" }, options.empty || "None.")));
    }
    tbody.replaceChildren(...rows);
    const filtered = reply.filtered_count ?? items.length;
    const total = reply.total_count ?? items.length;
    const first = filtered ? (state.page - 1) * state.pageSize + 1 : 0;
    summary.textContent =
      `${first}–${first + items.length - (filtered ? 1 : 0)} of ${filtered.toLocaleString("en-US")}` +
      (filtered !== total ? ` (filtered from ${total.toLocaleString("en-US")})` : "") +
      ` · ${elapsed} ms`;
    status.textContent = "";
    status.className = "muted list-status";
    renderPager(reply);
    el.dataset.loaded = String(generation);
  }

  return { el, refresh };
}
