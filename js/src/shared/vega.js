// Small charts specified in Python with altair (Vega-Lite JSON) and drawn here by
// vega-embed, bundled into the view at build time: no CDN, so charts render offline and
// in exported reports. Any view can import `drawChart`.
import embed from "vega-embed";

// Colours that follow JupyterLab's theme: read from its CSS variables on the element,
// so a chart drawn in the dark theme has light text and grid lines.
function themeConfig(el) {
  const css = getComputedStyle(el);
  const pick = (name, fallback) => (css.getPropertyValue(name) || "").trim() || fallback;
  const text = pick("--jp-ui-font-color1", "#222");
  const muted = pick("--jp-ui-font-color2", "#555");
  const grid = pick("--jp-border-color2", "#e0e0e0");
  return {
    background: null,
    font: "system-ui, -apple-system, Segoe UI, sans-serif",
    axis: { labelColor: muted, titleColor: text, gridColor: grid, domainColor: muted, tickColor: muted },
    legend: { labelColor: muted, titleColor: text },
    title: { color: text, subtitleColor: muted },
    view: { stroke: null },
  };
}

function merge(base, extra) {
  const out = { ...base };
  for (const [k, v] of Object.entries(extra || {})) {
    out[k] = v && typeof v === "object" && !Array.isArray(v) && base[k] && typeof base[k] === "object"
      ? merge(base[k], v) : v;
  }
  return out;
}

/**
 * Draw a Vega-Lite spec (an altair chart's `to_dict()`) into `el`.
 * Returns a promise of a handle with `finalize()`; call it before dropping the chart.
 * The spec's own config wins over the theme defaults.
 */
export async function drawChart(el, spec, { width } = {}) {
  const themed = { ...spec, config: merge(themeConfig(el), spec.config) };
  if (width && themed.width === undefined) themed.width = width;
  const result = await embed(el, themed, {
    actions: false,
    renderer: "svg",
    // Data travels inside the spec: refuse to load anything from the network.
    loader: { load: () => Promise.reject(new Error("charts take inline data only")) },
    tooltip: { theme: document.body.dataset.jpThemeLight === "false" ? "dark" : "light" },
  });
  return { view: result.view, finalize: () => result.finalize() };
}
