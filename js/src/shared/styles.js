// Styles shared by the views, scoped under each view's root class. Colours come from
// JupyterLab's theme variables (with light fallbacks outside Lab), so light and dark
// themes both read well.
const CSS = `
.cnc-view {
  --cnc-fg: var(--jp-ui-font-color1, #222); --cnc-fg2: var(--jp-ui-font-color2, #555);
  --cnc-bg: var(--jp-layout-color1, #fff); --cnc-bg2: var(--jp-layout-color2, #f3f3f3);
  --cnc-border: var(--jp-border-color1, #ccc); --cnc-border2: var(--jp-border-color2, #e3e3e3);
  --cnc-accent: var(--jp-brand-color1, #1f77b4); --cnc-select: #ff7f0e;
  --cnc-edge: var(--jp-border-color1, #9aa3ad); --cnc-warn: var(--jp-warn-color1, #b35900);
  --cnc-missing: #b4b4b4;
  font: 12px/1.4 var(--jp-ui-font-family, system-ui, -apple-system, "Segoe UI", sans-serif);
  color: var(--cnc-fg); position: relative; border: 1px solid var(--cnc-border2);
  border-radius: 6px; background: var(--cnc-bg); }
.cnc-view.cnc-zoom-engaged { border-color: var(--cnc-accent); }
.cnc-toolbar { display: flex; gap: 8px; align-items: center; padding: 6px 8px;
  border-bottom: 1px solid var(--cnc-border2); flex-wrap: wrap; }
.cnc-toolbar button, .cnc-toolbar select { font: inherit; padding: 2px 8px; color: var(--cnc-fg); width: auto; max-width: 12em;
  background: var(--cnc-bg2); border: 1px solid var(--cnc-border); border-radius: 3px; }
.cnc-toolbar button[aria-pressed="true"] { border-color: var(--cnc-accent);
  box-shadow: inset 0 0 0 1px var(--cnc-accent); }
.cnc-title { font-weight: 600; margin-right: auto; }
.cnc-legend { display: inline-flex; gap: 6px; align-items: center; flex-wrap: wrap; }
.cnc-legend-title { font-weight: 600; }
.cnc-legend-low, .cnc-legend-high { font-variant-numeric: tabular-nums; }
.cnc-legend-bar { position: relative; display: inline-block; width: 120px; height: 10px;
  border-radius: 2px; }
.cnc-legend-span { position: absolute; top: -3px; bottom: -3px; border: 1.5px solid var(--cnc-fg);
  border-radius: 2px; box-sizing: border-box; }
.cnc-legend-note { color: var(--cnc-warn); font-style: italic; }
.cnc-legend-swatch { display: inline-block; width: 10px; height: 10px; border-radius: 50%; }
.cnc-legend-swatch.cnc-missing { background: var(--cnc-bg); border: 1.5px dashed var(--cnc-missing); }
.cnc-zoom-hint { position: absolute; left: 50%; top: 48px; transform: translateX(-50%);
  background: var(--jp-layout-color3, rgba(40,40,40,0.85)); color: var(--jp-ui-inverse-font-color1, #fff);
  padding: 6px 12px; border-radius: 4px; pointer-events: none; z-index: 20; white-space: nowrap; }
.cnc-tooltip { position: absolute; pointer-events: none; background: var(--cnc-bg);
  color: var(--cnc-fg); border: 1px solid var(--cnc-border); border-radius: 4px; padding: 6px 8px;
  box-shadow: 0 2px 6px rgba(0,0,0,.25); max-width: 340px; z-index: 10; }
.cnc-tooltip table { border-collapse: collapse; }
.cnc-tooltip td { padding: 0 6px 0 0; vertical-align: top; }
.cnc-tooltip td:last-child { text-align: right; font-variant-numeric: tabular-nums; }
.cnc-tooltip .cnc-tip-title { font-weight: 600; margin-bottom: 2px; overflow-wrap: anywhere; }
.cnc-tooltip .cnc-tip-sub { color: var(--cnc-fg2); margin-bottom: 4px; overflow-wrap: anywhere; }
.cnc-empty { padding: 24px; color: var(--cnc-fg2); }
.cnc-view [data-filtered="out"] { opacity: 0.22; }
.cnc-provenance svg { display: block; width: 100%; cursor: grab; touch-action: none; }
.cnc-provenance svg.cnc-panning { cursor: grabbing; }
.cnc-provenance svg.cnc-boxing { cursor: crosshair; }
.cnc-provenance .cnc-brush { fill: var(--cnc-accent); fill-opacity: 0.12; stroke: var(--cnc-accent);
  stroke-dasharray: 4 3; }
.cnc-provenance .cnc-edge { fill: none; stroke: var(--cnc-edge); stroke-width: 1.5; }
.cnc-provenance .cnc-edge-label { fill: var(--cnc-fg2); font-size: 11px; paint-order: stroke;
  stroke: var(--cnc-bg); stroke-width: 3px; stroke-linejoin: round; }
.cnc-provenance.cnc-zoomed-out .cnc-edge-label { display: none; }
.cnc-provenance .cnc-column-label { fill: var(--cnc-fg2); font-size: 12px; font-weight: 600; }
.cnc-provenance .cnc-node { cursor: pointer; outline: none; }
.cnc-provenance .cnc-node circle.cnc-dot { stroke: var(--cnc-fg); stroke-width: 1; }
.cnc-provenance .cnc-node circle.cnc-dot.cnc-missing { fill: var(--cnc-bg); stroke: var(--cnc-missing);
  stroke-width: 2; stroke-dasharray: 3 2; }
.cnc-provenance .cnc-node .cnc-ring { fill: none; stroke: transparent; stroke-width: 3; }
.cnc-provenance .cnc-node .cnc-pareto { fill: none; stroke: #009e73; stroke-width: 3; }
.cnc-provenance .cnc-front-key { display: inline-flex; gap: 6px; align-items: center; }
.cnc-provenance .cnc-key-front { display: inline-block; width: 10px; height: 10px; border-radius: 50%;
  border: 3px solid #009e73; box-sizing: border-box; }
.cnc-provenance .cnc-node.cnc-selected .cnc-ring { stroke: var(--cnc-select); }
.cnc-provenance .cnc-node:focus-visible .cnc-ring, .cnc-provenance .cnc-node.cnc-focus .cnc-ring {
  stroke: var(--cnc-accent); stroke-dasharray: 3 2; }
.cnc-provenance .cnc-node.cnc-selected:focus-visible .cnc-ring { stroke: var(--cnc-select);
  stroke-dasharray: none; }
.cnc-provenance .cnc-node:hover circle.cnc-dot { stroke-width: 2; }
/* Dark themes: viridis starts at a dark purple that a dark page swallows; a 2 px outline in
   the text colour keeps every mark's disc visible whatever its colour. */
body[data-jp-theme-light="false"] .cnc-provenance .cnc-node circle.cnc-dot:not(.cnc-missing),
body[data-jp-theme-light="false"] .cnc-scatter .cnc-point:not([data-pareto="true"]) .cnc-dot { stroke: var(--jp-ui-font-color1, #eee);
  stroke-width: 2; }
.cnc-provenance .cnc-node-label { font-size: 12px; fill: var(--cnc-fg); paint-order: stroke;
  stroke: var(--cnc-bg); stroke-width: 3px; stroke-linejoin: round; }
.cnc-provenance .cnc-node.cnc-selected .cnc-node-label { font-weight: 700; }
.cnc-provenance .cnc-collapse { cursor: pointer; }
.cnc-provenance .cnc-collapse rect { fill: var(--cnc-bg); stroke: var(--cnc-fg2); }
.cnc-provenance .cnc-collapse text { font-size: 10px; fill: var(--cnc-fg); }
`;

// One <style> per stylesheet in the document, added by the first view that needs it: a
// hundred views in a notebook share two sheets instead of carrying a copy each.
//   addStyles()              the shared sheet
//   viewStyles(name, css)    a view's own sheet, once per name
export function viewStyles(name, css) {
  const id = `cnc-style-${name}`;
  if (typeof document === "undefined" || document.getElementById(id)) return;
  const style = document.createElement("style");
  style.id = id;
  style.textContent = css;
  document.head.append(style);
}

export function addStyles() {
  viewStyles("shared", CSS + DETAILS_CSS);
}

const DETAILS_CSS = `
.cnc-details .cnc-details-body { padding: 6px 10px 10px; max-height: 640px; overflow: auto; }
.cnc-details h4 { margin: 8px 0 4px; font-size: 12px; color: var(--cnc-fg2); font-weight: 600; }
.cnc-details .cnc-chain { margin: 0; padding-left: 20px; }
.cnc-details .cnc-chain li { overflow-wrap: anywhere; }
.cnc-details table.cnc-metrics { border-collapse: collapse; }
.cnc-details .cnc-metrics th, .cnc-details .cnc-metrics td { padding: 2px 10px 2px 0;
  text-align: left; font-weight: normal; border-bottom: 1px solid var(--cnc-border2); }
.cnc-details .cnc-metrics td { font-variant-numeric: tabular-nums; }
.cnc-details .cnc-metrics th[scope="row"] { color: var(--cnc-fg2); }
.cnc-details tr.cnc-differs th, .cnc-details tr.cnc-differs td { font-weight: 600; }
.cnc-details .cnc-warning { color: var(--cnc-warn); border: 1px solid var(--cnc-warn);
  border-radius: 4px; padding: 4px 8px; margin: 4px 0 8px; }
.cnc-details .cnc-note { color: var(--cnc-fg2); margin: 4px 0; }
.cnc-details .cnc-scroll-x { overflow-x: auto; }
.cnc-details .cnc-charts { display: flex; flex-wrap: wrap; gap: 12px; margin-top: 8px; }
.cnc-details summary { cursor: pointer; color: var(--cnc-fg2); }
.cnc-filter-panel .cnc-filter-list { display: flex; flex-wrap: wrap; gap: 10px 18px; padding: 8px 10px;
  max-height: 420px; overflow: auto; }
.cnc-filter-panel .cnc-filter { width: 262px; }
.cnc-filter-panel .cnc-filter-head { display: flex; gap: 6px; align-items: baseline; flex-wrap: wrap; }
.cnc-filter-panel .cnc-filter-range { color: var(--cnc-fg2); font-variant-numeric: tabular-nums; }
.cnc-filter-panel .cnc-filter.cnc-active .cnc-filter-range { color: var(--cnc-accent); font-weight: 600; }
.cnc-filter-panel .cnc-note { color: var(--cnc-fg2); }
.cnc-filter-panel svg.cnc-hist { display: block; cursor: crosshair; touch-action: none; }
.cnc-filter-panel .cnc-bar-all { fill: var(--cnc-border); }
.cnc-filter-panel .cnc-bar-in { fill: var(--cnc-accent); }
.cnc-filter-panel .cnc-brush { fill: var(--cnc-accent); fill-opacity: 0.15; stroke: var(--cnc-accent); }
.cnc-filter-panel .cnc-filter-inputs { display: flex; gap: 4px; align-items: center; }
.cnc-filter-panel .cnc-filter-inputs input { width: 96px; font: inherit; color: var(--cnc-fg);
  background: var(--cnc-bg2); border: 1px solid var(--cnc-border); border-radius: 3px; }
.cnc-filter-panel .cnc-filter-count { color: var(--cnc-fg2); }
`;
