// Wheel zoom that leaves a long notebook scrollable.
//
// API (one function):
//   const zoom = wheelZoom(target, { onZoom, hintParent, label });
//     target      the element the wheel is read over (an <svg> or a <div>)
//     onZoom      (factor, x, y) => void; x, y are relative to target's top-left corner
//     hintParent  the element the hint is placed in (the view's root, position: relative);
//                 defaults to target.parentElement
//     label       what the hint calls the view ("the graph"), optional
//   zoom.engaged()   true while plain wheels zoom (the view was clicked into)
//   zoom.destroy()   removes the listeners and the hint
//
// Rules (the style guide's "the notebook keeps its scroll"):
// - A wheel with Ctrl or Cmd held zooms; a touchpad pinch arrives that way.
// - After a pointer press inside the view, plain wheels zoom too, until a press
//   outside it, Escape, or the pointer leaving the view.
// - Otherwise the event is left to the page (no preventDefault), so the notebook
//   scrolls; the first such wheel shows a short hint saying how to zoom.
// The hint element has class "cnc-zoom-hint" and role "status"; the view's root
// gets class "cnc-zoom-engaged" while engaged (for a visible focus cue).
import { html } from "./dom.js";

const IS_MAC = typeof navigator !== "undefined" && /Mac|iPhone|iPad/.test(navigator.platform || "");
const HINT_MS = 2500;

export function wheelFactor(event) {
  // Lines and pages are larger steps than pixels; a pinch sends small pixel deltas.
  const unit = event.deltaMode === 1 ? 0.05 : event.deltaMode === 2 ? 1 : 0.002;
  const pinch = event.ctrlKey && event.deltaMode === 0 && Math.abs(event.deltaY) < 50 ? 5 : 1;
  return 2 ** (-event.deltaY * unit * pinch);
}

export function wheelZoom(target, { onZoom, hintParent, label = "the view" } = {}) {
  const parent = hintParent || target.parentElement;
  let engaged = false;
  let hint = null;
  let hintShown = false;
  let hintTimer = null;

  const setEngaged = (on) => {
    engaged = on;
    parent.classList.toggle("cnc-zoom-engaged", on);
  };

  const showHint = () => {
    if (!hint) {
      const key = IS_MAC ? "\u2318" : "Ctrl";
      hint = html("div", {
        class: "cnc-zoom-hint",
        role: "status",
        text: `To zoom ${label}, hold ${key} while scrolling, or click into it first`,
      });
      parent.append(hint);
    }
    hint.style.display = "block";
    clearTimeout(hintTimer);
    hintTimer = setTimeout(() => { hint.style.display = "none"; }, HINT_MS);
  };

  const onWheel = (event) => {
    if (event.ctrlKey || event.metaKey || engaged) {
      event.preventDefault();
      const box = target.getBoundingClientRect();
      onZoom(wheelFactor(event), event.clientX - box.left, event.clientY - box.top);
      return;
    }
    if (!hintShown) {
      hintShown = true;
      showHint();
    }
  };
  const onDown = () => setEngaged(true);
  const onOutside = (event) => {
    if (engaged && !parent.contains(event.target)) setEngaged(false);
  };
  const onLeave = () => setEngaged(false);
  const onKey = (event) => {
    if (event.key === "Escape") setEngaged(false);
  };

  target.addEventListener("wheel", onWheel, { passive: false });
  target.addEventListener("pointerdown", onDown);
  parent.addEventListener("pointerleave", onLeave);
  parent.addEventListener("keydown", onKey);
  document.addEventListener("pointerdown", onOutside, true);

  return {
    engaged: () => engaged,
    destroy() {
      target.removeEventListener("wheel", onWheel);
      target.removeEventListener("pointerdown", onDown);
      parent.removeEventListener("pointerleave", onLeave);
      parent.removeEventListener("keydown", onKey);
      document.removeEventListener("pointerdown", onOutside, true);
      clearTimeout(hintTimer);
      if (hint) hint.remove();
    },
  };
}
