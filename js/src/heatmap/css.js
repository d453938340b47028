// The layers view's stylesheet (the damage mode's own rules are in damage.js), added to the
// document once by the first layers view (viewStyles), not per render.
export const HEATMAP_CSS = `
.cnc-heatmap { --cnc-zero-both: #009E73; --cnc-nonzero: var(--jp-layout-color3, #d0d0d0); background: var(--jp-layout-color1, #fff);
  color: var(--jp-ui-font-color1, #222); border-color: var(--jp-border-color2, #ddd); }
.cnc-heatmap .cnc-toolbar { border-bottom-color: var(--jp-border-color2, #eee); }
.cnc-heatmap .cnc-modes { display: inline-flex; border: 1px solid var(--jp-border-color1, #bbb); border-radius: 4px; overflow: hidden; }
.cnc-heatmap .cnc-modes button { border: 0; background: transparent; color: inherit; padding: 2px 8px; cursor: pointer; }
.cnc-heatmap .cnc-modes button[aria-pressed="true"] { background: var(--jp-brand-color1, #1976d2); color: #fff; }
.cnc-heatmap .cnc-hm-body { display: flex; flex-wrap: wrap; gap: 10px; padding: 8px; align-items: flex-start; min-height: 120px; }
.cnc-heatmap .cnc-hm-table { flex: 3 1 520px; min-width: 320px; max-height: 520px; overflow: auto; }
.cnc-heatmap .cnc-hm-side { flex: 2 1 360px; min-width: 320px; max-height: 560px; overflow: auto;
  border-left: 1px solid var(--jp-border-color2, #eee); padding-left: 10px; }
.cnc-heatmap .cnc-hm-row { display: grid; align-items: center; min-height: 22px; border-radius: 3px; outline: none; }
.cnc-heatmap .cnc-hm-row:focus-visible { box-shadow: inset 0 0 0 2px var(--jp-brand-color1, #1976d2); }
.cnc-heatmap .cnc-hm-row.cnc-focused { background: var(--jp-layout-color2, #eef3fb); }
.cnc-heatmap .cnc-hm-row.cnc-hl-a .cnc-hm-label { box-shadow: inset 3px 0 0 #0072B2; }
.cnc-heatmap .cnc-hm-row.cnc-hl-b .cnc-hm-label { box-shadow: inset -3px 0 0 #D55E00; }
.cnc-heatmap .cnc-hm-row.cnc-hl-a, .cnc-heatmap .cnc-hm-row.cnc-hl-b { background: var(--jp-layout-color2, #f3f3f3); }
.cnc-heatmap .cnc-hm-head { position: sticky; top: 0; z-index: 2; background: var(--jp-layout-color1, #fff);
  font-weight: 600; border-bottom: 1px solid var(--jp-border-color2, #ddd); }
.cnc-heatmap .cnc-hm-head [data-model] { cursor: default; text-align: center; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; padding: 2px 4px; }
.cnc-heatmap .cnc-hm-head [data-model][data-filtered="out"] { opacity: 0.45; }
.cnc-heatmap .cnc-hm-head [data-model][aria-selected="true"] { text-decoration: underline; text-decoration-color: #ff7f0e; text-decoration-thickness: 2px; }
.cnc-heatmap .cnc-hm-label { display: flex; align-items: center; gap: 4px; white-space: nowrap; overflow: hidden; cursor: pointer; padding-right: 6px; }
.cnc-heatmap .cnc-hm-caret { width: 14px; flex: 0 0 14px; text-align: center; color: var(--jp-ui-font-color2, #666); cursor: pointer; }
.cnc-heatmap .cnc-hm-kind { color: var(--jp-ui-font-color2, #777); font-size: 11px; }
.cnc-heatmap .cnc-hm-tag { font-size: 10px; padding: 0 4px; border-radius: 3px; border: 1px solid var(--jp-border-color1, #999); color: var(--jp-ui-font-color2, #555); }
.cnc-heatmap .cnc-hm-cell { height: 18px; margin: 1px 2px; border-radius: 2px; position: relative; overflow: hidden; cursor: pointer; }
.cnc-heatmap .cnc-hm-cell.cnc-missing { background: repeating-linear-gradient(135deg, transparent 0 4px, var(--jp-border-color2, #ccc) 4px 5px); }
.cnc-heatmap .cnc-hm-cell.cnc-sparsity { background: var(--cnc-nonzero); display: flex; }
.cnc-heatmap .cnc-hm-cell.cnc-sparsity .cnc-hm-num { color: var(--jp-ui-font-color0, #000); text-shadow: none;
  background: var(--jp-layout-color1, #fff); border-radius: 2px; padding: 0 2px; line-height: 14px; top: 2px; }
.cnc-heatmap .cnc-hm-caption { color: var(--jp-ui-font-color2, #555); font-size: 11px; margin: 2px 0 6px;
  overflow-wrap: anywhere; }
.cnc-heatmap .cnc-hm-cell.cnc-sparsity span { display: block; height: 100%; }
.cnc-heatmap .cnc-hm-cell .cnc-hm-num { position: absolute; right: 3px; top: 1px; font-size: 10px; font-variant-numeric: tabular-nums;
  color: #fff; text-shadow: 0 0 2px #000; pointer-events: none; }
.cnc-heatmap .cnc-hm-cell.cnc-light .cnc-hm-num { color: #111; text-shadow: 0 0 2px #fff; }
.cnc-heatmap .cnc-hm-legend { display: inline-flex; gap: 8px; align-items: center; flex-wrap: wrap; }
.cnc-heatmap .cnc-hm-legend .cnc-legend-bar { width: 110px; }
.cnc-heatmap .cnc-hm-key { display: inline-block; width: 10px; height: 10px; border-radius: 2px; vertical-align: middle; margin-right: 3px; }
.cnc-heatmap .cnc-hm-note { color: var(--jp-warn-color0, #b35c00); font-size: 11px; }
.cnc-heatmap .cnc-tabs { display: flex; gap: 2px; border-bottom: 1px solid var(--jp-border-color2, #ddd); margin-bottom: 6px; }
.cnc-heatmap .cnc-tabs button { border: 0; background: transparent; color: inherit; padding: 4px 10px; cursor: pointer; border-bottom: 2px solid transparent; font: inherit; }
.cnc-heatmap .cnc-tabs button[aria-selected="true"] { border-bottom-color: var(--jp-brand-color1, #1976d2); font-weight: 600; }
.cnc-heatmap .cnc-hm-numbers { border-collapse: collapse; margin: 4px 0 8px; }
.cnc-heatmap .cnc-hm-numbers td { padding: 1px 8px 1px 0; }
.cnc-heatmap .cnc-hm-numbers td:last-child { text-align: right; font-variant-numeric: tabular-nums; }
.cnc-heatmap .cnc-hm-matrix text { fill: var(--jp-ui-font-color1, #222); font-size: 10px; }
.cnc-heatmap .cnc-hm-matrix rect.cnc-cka-cell { cursor: pointer; outline: none; }
.cnc-heatmap .cnc-hm-matrix rect.cnc-cka-cell:hover, .cnc-heatmap .cnc-hm-matrix rect.cnc-cka-cell:focus,
.cnc-heatmap .cnc-hm-matrix rect.cnc-cka-cell.cnc-picked { stroke: var(--jp-ui-font-color0, #000); stroke-width: 2; }
.cnc-heatmap .cnc-hm-message { padding: 6px 10px; color: var(--jp-ui-font-color2, #555); }
.cnc-heatmap .cnc-hm-error { color: var(--jp-error-color1, #c62828); overflow-wrap: anywhere; }
.cnc-heatmap .cnc-tooltip { background: var(--jp-layout-color1, #fff); color: var(--jp-ui-font-color1, #222); border-color: var(--jp-border-color1, #bbb); }
.cnc-heatmap .cnc-tooltip .cnc-tip-sub { color: var(--jp-ui-font-color2, #555); }
.cnc-heatmap .cnc-picker { display: flex; gap: 4px; margin: 4px 0; flex-wrap: wrap; }
.cnc-heatmap .cnc-picker button { font: inherit; padding: 1px 8px; }
.cnc-heatmap .cnc-picker button[aria-pressed="true"] { font-weight: 700; }
`;
