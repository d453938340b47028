// The scatter's axes (grid, ticks that do not collide, titles that say which way is better)
// and its footer: the frontier's key, the colour legend with its domain control, the size
// range, how many models are shown, notes.
//
// `view` (views/scatter.js) holds model, plot, footer, current (models), fmt(v, metric) and
// info(metric); `g` is one draw's derived state (views/scatter.js derive).
import { html, svg } from "../shared/dom.js";
import { scaleLegend, domainOptions, domainControl } from "../shared/colour.js";
import { metricTitle } from "../shared/format.js";
import { linearTicks, logTicks } from "../shared/ticks.js";
import { HEIGHT, M } from "./geometry.js";

export function drawAxes(view, { width, ex, ey, sx, sy, logx, logy, xm, ym }) {
  const { model, fmt, info } = view;
  const grid = svg("g", { class: "cnc-grid" });
  const axes = svg("g", { class: "cnc-axis" });
  const xt = logx ? logTicks(ex[0], ex[1]) : linearTicks(ex[0], ex[1], Math.max(3, Math.floor(width / 110)));
  const yt = logy ? logTicks(ey[0], ey[1]) : linearTicks(ey[0], ey[1], 6);
  const x0 = HEIGHT - M.bottom;
  axes.append(svg("line", { x1: M.left, x2: width - M.right, y1: x0, y2: x0 }));
  axes.append(svg("line", { x1: M.left, x2: M.left, y1: M.top, y2: x0 }));
  let lastRight = -Infinity;
  for (const v of xt) {
    const px = sx(v);
    grid.append(svg("line", { x1: px, x2: px, y1: M.top, y2: x0 }));
    axes.append(svg("line", { x1: px, x2: px, y1: x0, y2: x0 + 4 }));
    const label = fmt(v, xm);
    const half = label.length * 3.2;
    if (px - half > lastRight + 6) { // skip tick labels that would collide
      axes.append(svg("text", { x: px, y: x0 + 16, "text-anchor": "middle", text: label }));
      lastRight = px + half;
    }
  }
  for (const v of yt) {
    const py = sy(v);
    grid.append(svg("line", { x1: M.left, x2: width - M.right, y1: py, y2: py }));
    axes.append(svg("line", { x1: M.left - 4, x2: M.left, y1: py, y2: py }));
    axes.append(svg("text", { x: M.left - 7, y: py + 4, "text-anchor": "end", text: fmt(v, ym) }));
  }
  axes.append(svg("text", { class: "cnc-axis-title", x: (M.left + width - M.right) / 2, y: HEIGHT - 8,
    "text-anchor": "middle", text: `${metricTitle(xm, info(xm))}${logx ? ", log scale" : ""} \u2192 ${model.get("x_better")} is better` }));
  axes.append(svg("text", { class: "cnc-axis-title", x: -(M.top + x0) / 2, y: 16, transform: "rotate(-90)",
    "text-anchor": "middle", text: `${metricTitle(ym, info(ym))}${logy ? ", log scale" : ""} \u2192 ${model.get("y_better")} is better` }));
  view.plot.append(grid, axes);
}

export function drawFooter(view, { cm, cscale, cvals, domain, zm, zext, shown, missing, xm, ym, notes }) {
  const { model, fmt, info, footer } = view;
  const keys = [html("span", { class: "cnc-key" }, [html("span", { class: "cnc-key-front" }), "Pareto frontier"])];
  if (cm) {
    keys.push(scaleLegend(cm, cscale, (v) => fmt(v, cm)));
    keys.push(domainControl(domainOptions(cvals, cm, info(cm)), domain, (next) => {
      model.set("color_domains", { ...(model.get("color_domains") || {}), [cm]: next });
      model.save_changes();
    }));
  }
  if (zm && zext) keys.push(html("span", { text: `size: ${zm} ${fmt(zext[0], zm)} to ${fmt(zext[1], zm)}` }));
  footer.append(...keys);
  footer.append(html("span", { text: `${shown.length} of ${view.current.models.length} models` + (missing ? ` (${missing} without ${xm} or ${ym} not shown)` : "") }));
  for (const n of notes) footer.append(html("span", { text: n }));
  footer.append(html("span", { text: "click, shift-click or drag a box to select; Esc clears" }));
}
