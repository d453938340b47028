// The provenance graph's keyboard: one mark is in the tab order (roving tabindex), the arrows
// move to the nearest model in their direction, Enter or Space selects (shift adds), Escape
// clears the selection.
//
// `view` (views/provenance.js) holds model, root, placed (name -> {x, y}), focusName.
import { getSelected, select } from "../shared/selection.js";
import { keepVisible } from "./viewport.js";

const DIRECTIONS = { ArrowRight: [1, 0], ArrowLeft: [-1, 0], ArrowDown: [0, 1], ArrowUp: [0, -1] };

// The model nearest `from` in the arrow key's direction (distance along it plus three times
// the distance across), or null.
export function nearest(placed, from, key) {
  const p = placed.get(from);
  const dir = DIRECTIONS[key];
  let best = null;
  let bestScore = Infinity;
  for (const [name, q] of placed) {
    if (name === from) continue;
    const dx = q.x - p.x;
    const dy = q.y - p.y;
    const along = dx * dir[0] + dy * dir[1];
    if (along <= 0) continue;
    const across = Math.abs(dx * dir[1]) + Math.abs(dy * dir[0]);
    const score = along + 3 * across;
    if (score < bestScore) { bestScore = score; best = name; }
  }
  return best;
}

export function rovingFocus(view) {
  const marks = [...view.root.querySelectorAll(".cnc-node")];
  if (!marks.length) return;
  if (!view.focusName || !view.placed.has(view.focusName)) {
    const sel = [...getSelected(view.model)].find((n) => view.placed.has(n));
    view.focusName = sel || marks[0].getAttribute("data-model");
  }
  for (const m of marks) m.setAttribute("tabindex", m.getAttribute("data-model") === view.focusName ? "0" : "-1");
}

function markOf(root, name) {
  return [...root.querySelectorAll(".cnc-node")].find((m) => m.getAttribute("data-model") === name);
}

export function wireKeyboard(view) {
  const { model, root } = view;
  root.addEventListener("keydown", (event) => {
    const mark = event.target.closest && event.target.closest(".cnc-node");
    if (event.key === "Escape") {
      model.set("selected", []);
      model.save_changes();
      return;
    }
    if (!mark) return;
    const name = mark.getAttribute("data-model");
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      select(model, name, event.shiftKey || event.metaKey || event.ctrlKey);
    } else if (event.key.startsWith("Arrow")) {
      event.preventDefault();
      const next = nearest(view.placed, name, event.key);
      if (next) {
        view.focusName = next;
        rovingFocus(view);
        keepVisible(view, next);
        markOf(root, next).focus();
      }
    }
  });
  root.addEventListener("focusin", (event) => {
    const mark = event.target.closest && event.target.closest(".cnc-node");
    if (mark) {
      view.focusName = mark.getAttribute("data-model");
      rovingFocus(view);
    }
  });
}
