// Styles shared by the views, scoped under each view's root class.
const CSS = `
.cnc-view { font: 12px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
  position: relative; border: 1px solid #ddd; border-radius: 6px; background: #fff; }
.cnc-toolbar { display: flex; gap: 8px; align-items: center; padding: 6px 8px;
  border-bottom: 1px solid #eee; flex-wrap: wrap; }
.cnc-toolbar button, .cnc-toolbar select { font: inherit; padding: 2px 8px; }
.cnc-title { font-weight: 600; margin-right: auto; }
.cnc-legend { display: inline-flex; gap: 6px; align-items: center; }
.cnc-legend-title { font-weight: 600; }
.cnc-legend-bar { display: inline-block; width: 120px; height: 10px; border-radius: 2px; }
.cnc-legend-swatch { display: inline-block; width: 10px; height: 10px; border-radius: 50%; }
.cnc-tooltip { position: absolute; pointer-events: none; background: rgba(255,255,255,0.97);
  border: 1px solid #bbb; border-radius: 4px; padding: 6px 8px; box-shadow: 0 2px 6px rgba(0,0,0,.15);
  max-width: 340px; z-index: 10; }
.cnc-tooltip table { border-collapse: collapse; }
.cnc-tooltip td { padding: 0 6px 0 0; vertical-align: top; }
.cnc-tooltip td:last-child { text-align: right; font-variant-numeric: tabular-nums; }
.cnc-tooltip .cnc-tip-title { font-weight: 600; margin-bottom: 2px; overflow-wrap: anywhere; }
.cnc-tooltip .cnc-tip-sub { color: #555; margin-bottom: 4px; overflow-wrap: anywhere; }
.cnc-empty { padding: 24px; color: #666; }
.cnc-provenance svg { display: block; width: 100%; cursor: grab; touch-action: none; }
.cnc-provenance svg.cnc-panning { cursor: grabbing; }
.cnc-provenance .cnc-edge { fill: none; stroke: #9aa3ad; stroke-width: 1.5; }
.cnc-provenance .cnc-edge-label { fill: #444; font-size: 11px; paint-order: stroke;
  stroke: #fff; stroke-width: 3px; stroke-linejoin: round; }
.cnc-provenance.cnc-zoomed-out .cnc-edge-label { display: none; }
.cnc-provenance .cnc-node { cursor: pointer; outline: none; }
.cnc-provenance .cnc-node circle.cnc-dot { stroke: #333; stroke-width: 1; }
.cnc-provenance .cnc-node .cnc-ring { fill: none; stroke: transparent; stroke-width: 3; }
.cnc-provenance .cnc-node.cnc-selected .cnc-ring { stroke: #ff7f0e; }
.cnc-provenance .cnc-node:focus-visible .cnc-ring { stroke: #1f77b4; stroke-dasharray: 3 2; }
.cnc-provenance .cnc-node:hover circle.cnc-dot { stroke-width: 2; }
.cnc-provenance .cnc-node-label { font-size: 12px; fill: #111; paint-order: stroke; stroke: #fff;
  stroke-width: 3px; stroke-linejoin: round; }
.cnc-provenance .cnc-node.cnc-selected .cnc-node-label { font-weight: 700; }
.cnc-provenance .cnc-collapse { cursor: pointer; }
.cnc-provenance .cnc-collapse rect { fill: #fff; stroke: #777; }
.cnc-provenance .cnc-collapse text { font-size: 10px; fill: #333; }
`;

export function addStyles(root) {
  const style = document.createElement("style");
  style.textContent = CSS;
  root.append(style);
}
