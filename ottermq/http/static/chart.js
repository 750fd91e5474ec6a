// Line charts drawn as SVG by hand (no library, nothing fetched): a few series of [time ms, value] points
// over a shared time axis, with a legend that shows each series' latest value.

import { h } from "./dom.js";

const NS = "http://www.w3.org/2000/svg";
const W = 600;
const H = 170;
const PAD = { left: 52, right: 8, top: 8, bottom: 20 };

function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(NS, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  if (text !== undefined) el.textContent = text;
  return el;
}

// The smallest "nice" number (1, 2, 5 x 10^n) at or above `value`.
function niceCeil(value) {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

function shortNumber(value) {
  if (value >= 1e6) return `${+(value / 1e6).toFixed(1)}M`;
  if (value >= 1e3) return `${+(value / 1e3).toFixed(1)}k`;
  return `${+value.toFixed(value < 10 ? 1 : 0)}`;
}

// series: [{label, points: [[t, v], ...], format?}]; series without points are left out (a field the
// broker does not report yet draws no line). `span`: milliseconds shown, ending at the latest point.
export function lineChart(title, series, { span = 10 * 60 * 1000, format = shortNumber } = {}) {
  const shown = series.filter((s) => s.points && s.points.length);
  const box = h("figure", { class: "chart" }, h("figcaption", {}, title));
  if (!shown.length) {
    box.append(h("p", { class: "muted" }, "No data yet."));
    return box;
  }
  const end = Math.max(...shown.map((s) => s.points[s.points.length - 1][0]));
  const first = Math.min(...shown.map((s) => s.points[0][0]));
  // A page opened a moment ago has a few points: show what there is (at least a minute), up to `span`.
  span = Math.min(span, Math.max(60 * 1000, end - first));
  const start = end - span;
  const max = niceCeil(Math.max(0, ...shown.flatMap((s) => s.points.map((p) => p[1]))));
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const x = (t) => PAD.left + ((t - start) / span) * plotW;
  const y = (v) => PAD.top + plotH - (v / max) * plotH;
  const chart = svg("svg", {
    viewBox: `0 0 ${W} ${H}`,
    class: "chart-svg",
    role: "img",
    "aria-label": title,
  });
  for (const fraction of [0, 0.5, 1]) {
    const value = max * fraction;
    chart.append(svg("line", { x1: PAD.left, x2: W - PAD.right, y1: y(value), y2: y(value), class: "grid" }));
    chart.append(svg("text", { x: PAD.left - 6, y: y(value) + 4, class: "axis", "text-anchor": "end" }, shortNumber(value)));
  }
  const ago = span >= 120000 ? `${Math.round(span / 60000)} min ago` : `${Math.round(span / 1000)} s ago`;
  chart.append(svg("text", { x: PAD.left, y: H - 4, class: "axis" }, ago));
  chart.append(svg("text", { x: W - PAD.right, y: H - 4, class: "axis", "text-anchor": "end" }, "now"));
  const legend = h("ul", { class: "legend" });
  series.forEach((s, index) => {
    if (!s.points || !s.points.length) return;
    const visible = s.points.filter((p) => p[0] >= start);
    const path = visible.map((p, i) => `${i ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join("");
    if (path) chart.append(svg("path", { d: path, class: `line s${index % 7}` }));
    if (visible.length === 1) {
      chart.append(svg("circle", { cx: x(visible[0][0]), cy: y(visible[0][1]), r: 2.5, class: `dot s${index % 7}` }));
    }
    const latest = s.points[s.points.length - 1][1];
    legend.append(
      h("li", {}, h("span", { class: `swatch s${index % 7}` }), `${s.label}: `, h("b", {}, (s.format || format)(latest))),
    );
  });
  box.append(chart, legend);
  return box;
}

// Points of a time series the UI samples itself while a page is open (when the API gives no samples).
export class History {
  constructor(limit = 240) {
    this.limit = limit;
    this.series = new Map();
  }

  add(name, value, t = Date.now()) {
    if (typeof value !== "number" || Number.isNaN(value)) return;
    let points = this.series.get(name);
    if (!points) {
      points = [];
      this.series.set(name, points);
    }
    points.push([t, value]);
    if (points.length > this.limit) points.splice(0, points.length - this.limit);
  }

  points(name) {
    return this.series.get(name) || [];
  }
}

// Points from RabbitMQ's `<field>_details.samples` ([{sample, timestamp}], newest first) when the API sent
// them: lengths as they are, rates (`rate: true`) as the difference between neighbouring samples.
export function samplePoints(details, { rate = false } = {}) {
  const samples = details && Array.isArray(details.samples) ? [...details.samples].reverse() : [];
  if (!rate) return samples.map((s) => [s.timestamp, s.sample]);
  const points = [];
  for (let i = 1; i < samples.length; i++) {
    const seconds = (samples[i].timestamp - samples[i - 1].timestamp) / 1000;
    if (seconds > 0) points.push([samples[i].timestamp, Math.max(0, (samples[i].sample - samples[i - 1].sample) / seconds)]);
  }
  return points;
}
