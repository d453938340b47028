// The scatter's stylesheet (also the diff's tooltip and background), added to the document
// once by the first scatter view (viewStyles), not per render.
export const SCATTER_CSS = `
.cnc-scatter.cnc-view, .cnc-diff.cnc-view { background: var(--jp-layout-color1, #fff);
  color: var(--jp-ui-font-color1, #222); border-color: var(--jp-border-color2, #ddd); }
.cnc-scatter .cnc-toolbar { border-bottom-color: var(--jp-border-color2, #eee); }
.cnc-scatter .cnc-toolbar label { display: inline-flex; gap: 4px; align-items: center; white-space: nowrap; }
.cnc-scatter .cnc-toolbar select { max-width: 150px; }
.cnc-scatter svg.cnc-plot { display: block; width: 100%; user-select: none; touch-action: none; }
.cnc-scatter .cnc-axis line, .cnc-scatter .cnc-axis path { stroke: var(--jp-border-color1, #999); }
.cnc-scatter .cnc-grid line { stroke: var(--jp-border-color3, #eee); }
.cnc-scatter .cnc-axis text { fill: var(--jp-ui-font-color2, #555); font-size: 11px; }
.cnc-scatter .cnc-axis-title { fill: var(--jp-ui-font-color1, #222); font-size: 12px; font-weight: 600; }
.cnc-scatter .cnc-front { fill: none; stroke: #009e73; stroke-width: 2; stroke-dasharray: 6 3; }
.cnc-scatter .cnc-trajectory { stroke: var(--jp-ui-font-color3, #aaa); stroke-width: 1.2; fill: none;
  marker-end: none; }
.cnc-scatter .cnc-point { cursor: pointer; outline: none; }
.cnc-scatter .cnc-point .cnc-dot { stroke: var(--jp-ui-font-color1, #333); stroke-width: 0.8; }
.cnc-scatter .cnc-point[data-pareto="true"] .cnc-dot { stroke: #009e73; stroke-width: 2.5; }
.cnc-scatter .cnc-point .cnc-ring { fill: none; stroke: transparent; stroke-width: 3; pointer-events: none; }
.cnc-scatter .cnc-count-badge { pointer-events: none; }
.cnc-scatter .cnc-point.cnc-selected .cnc-ring { stroke: #ff7f0e; }
.cnc-scatter .cnc-point:focus-visible .cnc-ring { stroke: #1f77b4; stroke-dasharray: 3 2; }
.cnc-scatter .cnc-point[data-filtered="out"] { opacity: 0.22; }
.cnc-scatter .cnc-point[data-filtered="out"].cnc-selected { opacity: 0.6; }
.cnc-scatter .cnc-point-label { font-size: 11px; fill: var(--jp-ui-font-color1, #111); paint-order: stroke;
  stroke: var(--jp-layout-color1, #fff); stroke-width: 3px; stroke-linejoin: round; pointer-events: none; }
.cnc-scatter .cnc-count-badge rect { fill: var(--jp-layout-color1, #fff); stroke: var(--jp-ui-font-color1, #222); stroke-width: 1; }
.cnc-scatter .cnc-count-badge text { fill: var(--jp-ui-font-color1, #222); font-size: 10px; font-weight: 700; }
.cnc-scatter .cnc-brush { fill: rgba(31, 119, 180, 0.12); stroke: #1f77b4; stroke-dasharray: 4 2; }
.cnc-scatter .cnc-footer { display: flex; gap: 12px; padding: 4px 8px 6px; color: var(--jp-ui-font-color2, #666);
  flex-wrap: wrap; min-height: 18px; }
.cnc-scatter .cnc-footer .cnc-key { display: inline-flex; gap: 4px; align-items: center; }
.cnc-scatter .cnc-key-front { display: inline-block; width: 18px; border-top: 2px dashed #009e73; }
.cnc-scatter .cnc-empty-plot { fill: var(--jp-ui-font-color2, #666); font-size: 13px; }
.cnc-scatter .cnc-tooltip, .cnc-diff .cnc-tooltip { background: var(--jp-layout-color0, #fff);
  color: var(--jp-ui-font-color1, #222); border-color: var(--jp-border-color1, #bbb); }
.cnc-scatter .cnc-tooltip .cnc-tip-sub { color: var(--jp-ui-font-color2, #555); }
`;
