// The provenance graph's camera: pan and zoom of the forest (a transform on the viewport
// group), fitting the whole forest, keeping a focused model in view; dragging the background
// pans, Shift+drag (or the Select toggle) draws a box that selects the models inside.
//
// `view` (views/provenance.js) holds model, root, cam ({x, y, k}), extent ({w, h} of the
// layout), placed (name -> {x, y} in layout coordinates), boxMode, dom.canvas, dom.viewport,
// dom.brush.
import { getSelected } from "../shared/selection.js";

export const PAD = 40;

// The camera that shows an extent whole in a width x height canvas (within zoom limits),
// left-aligned and centred vertically.
export function fitCamera(extent, width, height) {
  const k = Math.min(1.5, Math.max(0.35, Math.min((width - 2 * PAD) / Math.max(1, extent.w),
    (height - 2 * PAD) / Math.max(1, extent.h))));
  return { k, x: PAD, y: Math.max(PAD, (height - extent.h * k) / 2) };
}

export function applyView(view) {
  const { cam } = view;
  view.dom.viewport.setAttribute("transform", `translate(${cam.x},${cam.y}) scale(${cam.k})`);
  // Semantic zoom: far out, edge labels are unreadable clutter; their text stays in titles.
  view.root.classList.toggle("cnc-zoomed-out", cam.k < 0.6);
}

export function zoomAt(view, factor, cx, cy) {
  const { cam } = view;
  const k = Math.min(4, Math.max(0.1, cam.k * factor));
  cam.x = cx - ((cx - cam.x) * k) / cam.k;
  cam.y = cy - ((cy - cam.y) * k) / cam.k;
  cam.k = k;
  applyView(view);
}

export function fitView(view) {
  if (!view.extent) return;
  const { canvas } = view.dom;
  Object.assign(view.cam, fitCamera(view.extent, canvas.clientWidth || 800, canvas.clientHeight || 400));
  applyView(view);
}

// Centre the model when it is outside the canvas's padded area.
export function keepVisible(view, name) {
  const { cam } = view;
  const p = view.placed.get(name);
  const sx = cam.x + p.x * cam.k;
  const sy = cam.y + p.y * cam.k;
  const w = view.dom.canvas.clientWidth;
  const h = view.dom.canvas.clientHeight;
  if (sx < PAD || sx > w - PAD || sy < PAD || sy > h - PAD) {
    cam.x += w / 2 - sx;
    cam.y += h / 2 - sy;
    applyView(view);
  }
}

// Drag the background to pan; Shift+drag (or the Select toggle) draws a box that selects.
export function wireDrag(view) {
  const { model, cam } = view;
  const { canvas, brush } = view.dom;
  let drag = null;
  const local = (event) => {
    const box = canvas.getBoundingClientRect();
    return { x: event.clientX - box.left, y: event.clientY - box.top };
  };
  canvas.addEventListener("pointerdown", (event) => {
    if (event.target.closest(".cnc-node, .cnc-collapse")) return;
    const at = local(event);
    if (view.boxMode || event.shiftKey) {
      drag = { box: true, x0: at.x, y0: at.y, additive: event.shiftKey && view.boxMode };
      canvas.classList.add("cnc-boxing");
    } else {
      drag = { x: event.clientX, y: event.clientY, vx: cam.x, vy: cam.y };
      canvas.classList.add("cnc-panning");
    }
    canvas.setPointerCapture(event.pointerId);
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drag) return;
    if (drag.box) {
      const at = local(event);
      brush.setAttribute("x", Math.min(at.x, drag.x0));
      brush.setAttribute("y", Math.min(at.y, drag.y0));
      brush.setAttribute("width", Math.abs(at.x - drag.x0));
      brush.setAttribute("height", Math.abs(at.y - drag.y0));
      brush.setAttribute("visibility", "visible");
      return;
    }
    cam.x = drag.vx + event.clientX - drag.x;
    cam.y = drag.vy + event.clientY - drag.y;
    applyView(view);
  });
  const endDrag = (event) => {
    if (drag && drag.box && event.type === "pointerup") {
      const at = local(event);
      const [x0, x1] = [Math.min(at.x, drag.x0), Math.max(at.x, drag.x0)];
      const [y0, y1] = [Math.min(at.y, drag.y0), Math.max(at.y, drag.y0)];
      const inside = [];
      for (const [name, p] of view.placed) {
        const sx = cam.x + p.x * cam.k;
        const sy = cam.y + p.y * cam.k;
        if (sx >= x0 && sx <= x1 && sy >= y0 && sy <= y1) inside.push(name);
      }
      if (x1 - x0 > 3 || y1 - y0 > 3) {
        const next = drag.additive ? [...new Set([...getSelected(model), ...inside])] : inside;
        model.set("selected", next);
        model.save_changes();
      }
    }
    drag = null;
    brush.setAttribute("visibility", "hidden");
    canvas.classList.remove("cnc-panning", "cnc-boxing");
  };
  canvas.addEventListener("pointerup", endDrag);
  canvas.addEventListener("pointercancel", endDrag);
}
