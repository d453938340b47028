// The scatter's marks: lines to parents, the Pareto frontier, models at one place spread on a
// ring with a badge that counts them, the points (click, shift-click, keyboard, tooltip) and
// the names beside the selected models and the frontier.
//
// `view` (views/scatter.js) holds model, plot, current ({models, front, places, badgeBoxes,
// px, py, shown}), fmt, showTip(i, event), hideTip(); `g` is one draw's derived state.
import { svg, truncate, wireMark } from "../shared/dom.js";
import { getSelected, select } from "../shared/selection.js";
import { frontierPath, placeLabels, ring, samePlace } from "./geometry.js";

// Each model to its parent.
export function drawTrajectories(view, { shown, sx, sy, xs, ys }) {
  const { models } = view.current;
  const shownSet = new Set(shown);
  const index = new Map(models.map((m, i) => [m.name, i]));
  const lines = svg("g", { class: "cnc-trajectories" });
  for (const i of shown) {
    const p = index.get(models[i].parent);
    if (p === undefined || !shownSet.has(p)) continue;
    lines.append(svg("line", { class: "cnc-trajectory", "data-edge": `${models[i].parent}->${models[i].name}`,
      x1: sx(xs[p]), y1: sy(ys[p]), x2: sx(xs[i]), y2: sy(ys[i]) }));
  }
  view.plot.append(lines);
}

export function drawFrontier(view, g) {
  if (!g.front.length) return;
  const d = frontierPath(g.front, g, view.model.get("x_better"), view.model.get("y_better"));
  view.plot.append(svg("path", { class: "cnc-front", d }));
}

// Models at one place spread on a small ring around it (each stays clickable) with a badge
// that counts them; the tooltip names the others. Sets g.px / g.py, returns the badges.
export function spreadPlaces(view, g) {
  const { shown, sx, sy, xs, ys, radius } = g;
  const { current } = view;
  const offset = new Map();
  const badges = svg("g", { class: "cnc-badges" });
  for (const group of samePlace(shown, (i) => sx(xs[i]), (i) => sy(ys[i]))) {
    if (group.length < 2) continue;
    const cx = sx(xs[group[0]]);
    const cy = sy(ys[group[0]]);
    const { spread, offsets } = ring(group, radius);
    group.forEach((i, k) => {
      offset.set(i, offsets[k]);
      current.places.set(i, group);
    });
    const names = group.map((i) => current.models[i].name);
    const digits = String(group.length).length;
    const [bx, by] = [cx + spread * 0.75 + 10, cy - spread * 0.75 - 10];
    // Names are placed around it later, never over it.
    current.badgeBoxes.push([bx - 4, by - 11, bx + 8 + 7 * digits, by + 7]);
    badges.append(svg("g", { class: "cnc-count-badge", "data-count": group.length,
      "data-models": names.join("\n"), transform: `translate(${bx},${by})`,
      "aria-label": `${group.length} models at this point: ${names.join(", ")}` }, [
      svg("title", { text: `${group.length} models at this point: ${names.join(", ")}` }),
      svg("rect", { x: -2, y: -9, width: 8 + 7 * digits, height: 14, rx: 7 }),
      svg("text", { x: 2 + 3.5 * digits, y: 2, "text-anchor": "middle", text: `${group.length}` }),
    ]));
  }
  g.px = (i) => sx(xs[i]) + (offset.get(i) || [0, 0])[0];
  g.py = (i) => sy(ys[i]) + (offset.get(i) || [0, 0])[1];
  return badges;
}

export function drawPoints(view, { shown, radius, xs, ys, xm, ym, cm, cscale, cvals, px, py }) {
  const { model, current, fmt } = view;
  const filteredOut = (model.get("filtered_out") || []);
  const marks = svg("g", { class: "cnc-points" });
  // Larger points first so small ones stay clickable on top.
  for (const i of [...shown].sort((a, b) => radius(b) - radius(a))) {
    const m = current.models[i];
    const r = radius(i);
    const out = filteredOut.includes(m.name);
    const onFront = current.front.has(i);
    const label = `${m.name}: ${xm} ${fmt(xs[i], xm)}, ${ym} ${fmt(ys[i], ym)}`
      + (onFront ? ", on the Pareto frontier" : "") + (out ? ", outside the filters" : "");
    const mark = svg("g", {
      class: "cnc-point", "data-model": m.name, role: "option", tabindex: 0, "aria-selected": "false",
      "aria-label": label, "data-pareto": onFront ? "true" : null, "data-filtered": out ? "out" : null,
      "data-place": current.places.has(i) ? current.places.get(i).length : null,
      transform: `translate(${px(i)},${py(i)})`,
    }, [
      svg("circle", { class: "cnc-ring", r: r + 4 }),
      svg("circle", { class: "cnc-dot", r, fill: cm ? cscale(cvals[i]) : "#0072b2" }),
    ]);
    mark.addEventListener("pointerdown", (event) => event.stopPropagation());
    wireMark(mark, { onSelect: (additive) => select(model, m.name, additive),
      tip: (event) => view.showTip(i, event), hideTip: view.hideTip });
    marks.append(mark);
  }
  return marks;
}

// Names beside the frontier and the selected models, skipping any that would overlap.
export function drawLabels(view) {
  const { plot, current } = view;
  const layer = plot.querySelector(".cnc-labels");
  if (!layer || !current || !current.shown) return;
  layer.replaceChildren();
  const selected = getSelected(view.model);
  // Priority: selected, then the frontier, then (when there are few models) the rest.
  const rank = (i) => (selected.has(current.models[i].name) ? 0 : current.front.has(i) ? 1 : 2);
  const wanted = current.shown.filter((i) => rank(i) < 2 || current.shown.length <= 15)
    .sort((a, b) => rank(a) - rank(b));
  const textOf = (i) => truncate(current.models[i].name, 28);
  const width = plot.viewBox.baseVal ? plot.viewBox.baseVal.width : 720;
  const placed = placeLabels(wanted, { px: current.px, py: current.py, textOf, width, taken: current.badgeBoxes || [] });
  for (const { i, x, y, anchor } of placed) {
    layer.append(svg("text", { class: "cnc-point-label", x, y, "text-anchor": anchor, text: textOf(i) }));
  }
}
