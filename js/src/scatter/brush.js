// The scatter's box selection: drag on the background to select the models inside (shift
// adds to the selection); a click on the background clears it, Escape too.
//
// `view` (views/scatter.js) holds model, root, plot and current ({shown, px, py, models}).
import { svg } from "../shared/dom.js";
import { getSelected } from "../shared/selection.js";

export function wireBrush(view) {
  const { model, plot, root } = view;
  let brush = null;
  plot.addEventListener("pointerdown", (event) => {
    if (!view.current || !view.current.shown) return;
    const r = plot.getBoundingClientRect();
    const k = plot.viewBox.baseVal.width / r.width;
    brush = { x0: (event.clientX - r.left) * k, y0: (event.clientY - r.top) * k, k, r, additive: event.shiftKey,
      rect: svg("rect", { class: "cnc-brush", width: 0, height: 0 }) };
    plot.append(brush.rect);
    plot.setPointerCapture(event.pointerId);
  });
  plot.addEventListener("pointermove", (event) => {
    if (!brush) return;
    const x = (event.clientX - brush.r.left) * brush.k;
    const y = (event.clientY - brush.r.top) * brush.k;
    brush.x1 = x;
    brush.y1 = y;
    brush.rect.setAttribute("x", Math.min(x, brush.x0));
    brush.rect.setAttribute("y", Math.min(y, brush.y0));
    brush.rect.setAttribute("width", Math.abs(x - brush.x0));
    brush.rect.setAttribute("height", Math.abs(y - brush.y0));
  });
  const endBrush = () => {
    if (!brush) return;
    const b = brush;
    brush = null;
    b.rect.remove();
    if (b.x1 === undefined || (Math.abs(b.x1 - b.x0) < 3 && Math.abs(b.y1 - b.y0) < 3)) {
      if (!b.additive) { model.set("selected", []); model.save_changes(); }
      return;
    }
    const [xa, xb] = [Math.min(b.x0, b.x1), Math.max(b.x0, b.x1)];
    const [ya, yb] = [Math.min(b.y0, b.y1), Math.max(b.y0, b.y1)];
    const { current } = view;
    const inside = current.shown.filter((i) => {
      const px = current.px(i);
      const py = current.py(i);
      return px >= xa && px <= xb && py >= ya && py <= yb;
    }).map((i) => current.models[i].name);
    const next = b.additive ? [...new Set([...getSelected(model), ...inside])] : inside;
    model.set("selected", next);
    model.save_changes();
  };
  plot.addEventListener("pointerup", endBrush);
  plot.addEventListener("pointercancel", endBrush);
  root.addEventListener("keydown", (event) => {
    if (event.key === "Escape") { model.set("selected", []); model.save_changes(); }
  });
}
