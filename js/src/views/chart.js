// A chart the library returns to the user (an altair spec), drawn by the vega-embed bundled
// into this module: it renders with no network, in the notebook and in exported reports.
import { drawChart } from "../shared/vega.js";

function render({ model, el }) {
  el.classList.add("cnc-vega-chart");
  let handle = null;
  let drawing = 0; // a newer spec supersedes a draw still in flight
  let alive = true;

  async function draw() {
    const ticket = ++drawing;
    if (handle) { handle.finalize(); handle = null; }
    el.removeAttribute("data-rendered");
    el.replaceChildren();
    try {
      const drawn = await drawChart(el, model.get("spec"));
      if (!alive || ticket !== drawing) { drawn.finalize(); return; }
      handle = drawn;
      el.setAttribute("data-rendered", "true");
    } catch (err) {
      if (!alive || ticket !== drawing) return;
      const box = document.createElement("div");
      box.className = "cnc-chart-error";
      box.textContent = `the chart could not be drawn: ${err && err.message ? err.message : err}`;
      el.replaceChildren(box);
      el.setAttribute("data-rendered", "failed");
    }
  }

  model.on("change:spec", draw);
  draw();
  return () => {
    alive = false;
    model.off("change:spec", draw);
    if (handle) handle.finalize();
  };
}

export default { render };
