// The bar chart of call times: for each function, its first (cold) call and its latest
// warm call in this tab, on a log scale (a compile takes milliseconds, a warm call
// microseconds), coloured by what the call took: compiled and added, loaded from
// IndexedDB, or already bound in this tab. Plain SVG built here; no chart library.

import { formatMs } from "./format.js";

const SVG = "http://www.w3.org/2000/svg";

/** What a call took, as the legend and the bars name it. */
export const HOW = {
  compiled: { label: "compiled and added", color: "#e39b2d" },
  loaded: { label: "loaded from IndexedDB", color: "#4f86c6" },
  bound: { label: "already bound in this tab", color: "#3e9e62" },
};

const width = 560;
const labelWidth = 120;
const valueWidth = 70;
const rowHeight = 20;
const top = 26;
const axisHeight = 24;

/**
 * Draws `rows` (`[{func, kind: "cold" | "warm", ms, how: "compiled" | "loaded" |
 * "bound", last}]`) into `container`, replacing what was there. Each bar is a
 * `<g class="bar">` with `data-func`, `data-kind`, `data-how` and `data-ms` (exact),
 * and a text label with the rounded time.
 */
export function drawCallChart(container, rows) {
  const svg = element("svg", { role: "img", "aria-label": "call times, cold and warm" });
  if (rows.length === 0) {
    container.replaceChildren(paragraph("Call a function to see its time here."));
    return;
  }
  const height = top + rows.length * rowHeight + axisHeight;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("width", String(width));
  svg.setAttribute("height", String(height));

  // Legend.
  let x = 0;
  for (const how of Object.values(HOW)) {
    svg.append(element("rect", { x, y: 4, width: 10, height: 10, fill: how.color }));
    const text = label(x + 14, 13, how.label, { class: "legend" });
    svg.append(text);
    x += 14 + how.label.length * 6.2 + 14;
  }

  // Log scale over whole decades around the data.
  const values = rows.map((r) => Math.max(r.ms, 1e-3));
  const low = Math.floor(Math.log10(Math.min(...values)));
  const high = Math.max(low + 1, Math.ceil(Math.log10(Math.max(...values))));
  const plotWidth = width - labelWidth - valueWidth;
  const scale = (ms) => labelWidth + ((Math.log10(Math.max(ms, 1e-3)) - low) / (high - low)) * plotWidth;
  const plotBottom = top + rows.length * rowHeight;
  for (let decade = low; decade <= high; decade++) {
    const tx = scale(10 ** decade);
    svg.append(element("line", { x1: tx, x2: tx, y1: top - 4, y2: plotBottom, class: "grid" }));
    svg.append(label(tx, plotBottom + 14, formatMs(10 ** decade), { "text-anchor": "middle", class: "axis" }));
  }

  rows.forEach((row, i) => {
    const y = top + i * rowHeight;
    const group = element("g", {
      class: row.last ? "bar last" : "bar",
      "data-func": row.func,
      "data-kind": row.kind,
      "data-how": row.how,
      "data-ms": String(row.ms),
    });
    const title = element("title", {});
    title.textContent = `${row.func}, ${row.kind} call: ${formatMs(row.ms)} (${HOW[row.how].label})`;
    group.append(title);
    group.append(label(labelWidth - 6, y + 14, `${row.func} · ${row.kind}`, { "text-anchor": "end", class: "row-label" }));
    const end = scale(row.ms);
    group.append(element("rect", {
      x: labelWidth, y: y + 3, width: Math.max(1, end - labelWidth), height: rowHeight - 6,
      fill: HOW[row.how].color, class: "bar-rect",
    }));
    group.append(label(end + 4, y + 14, formatMs(row.ms), { class: "bar-value" }));
    svg.append(group);
  });
  container.replaceChildren(svg);
}

function element(name, attributes) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  return node;
}

function label(x, y, text, attributes) {
  const node = element("text", { x, y, ...attributes });
  node.textContent = text;
  return node;
}

function paragraph(text) {
  const p = document.createElement("p");
  p.className = "hint";
  p.textContent = text;
  return p;
}
