// The diff's stylesheet (its task views' rules are in rows.js, lm.js, answers.js), added to
// the document once by the first diff view (viewStyles), not per render; and the instance
// table's geometry, which its virtual scrolling shares.
export const ROW = 28;
export const HEAD = 36;
export const BODY = 420;

export const DIFF_CSS = `
.cnc-diff.cnc-view { background: var(--jp-layout-color1, #fff); color: var(--jp-ui-font-color1, #222);
  border-color: var(--jp-border-color2, #ddd); min-height: 120px; }
.cnc-diff .cnc-toolbar { border-bottom-color: var(--jp-border-color2, #eee); }
.cnc-diff .cnc-section { padding: 6px 8px; }
.cnc-diff .cnc-summary-box { overflow-x: auto; }
.cnc-diff h4 { margin: 2px 0 6px; font-size: 12px; font-weight: 600; }
.cnc-diff .cnc-muted { color: var(--jp-ui-font-color2, #666); }
.cnc-diff table.cnc-summary { border-collapse: collapse; font-variant-numeric: tabular-nums; }
.cnc-diff table.cnc-summary th, .cnc-diff table.cnc-summary td { padding: 3px 10px; text-align: right;
  border-bottom: 1px solid var(--jp-border-color3, #eee); white-space: nowrap; }
.cnc-diff table.cnc-summary th { font-weight: 600; cursor: help; }
.cnc-diff table.cnc-summary th:first-child, .cnc-diff table.cnc-summary td:first-child { text-align: left;
  max-width: 220px; overflow: hidden; text-overflow: ellipsis; }
.cnc-diff .cnc-ref-tag { font-size: 10px; padding: 0 4px; margin-left: 4px; border-radius: 3px;
  background: var(--jp-layout-color3, #ddd); }
.cnc-diff .cnc-panels { display: flex; gap: 16px; flex-wrap: wrap; align-items: flex-start; }
.cnc-diff .cnc-matrix { display: grid; gap: 1px; font-variant-numeric: tabular-nums; font-size: 11px; }
.cnc-diff .cnc-matrix .cnc-cell { width: 34px; height: 24px; display: flex; align-items: center;
  justify-content: center; border-radius: 2px; cursor: pointer; outline: none; }
.cnc-diff .cnc-matrix .cnc-cell:focus-visible, .cnc-diff .cnc-matrix .cnc-cell.cnc-active {
  box-shadow: 0 0 0 2px #ff7f0e inset; }
.cnc-diff .cnc-matrix .cnc-axis-label { font-size: 11px; overflow: hidden; text-overflow: ellipsis;
  white-space: nowrap; display: flex; align-items: center; color: var(--jp-ui-font-color2, #555); }
.cnc-diff .cnc-matrix .cnc-col-label { justify-content: center; width: 34px; }
.cnc-diff .cnc-matrix .cnc-row-label { justify-content: flex-end; padding-right: 4px; max-width: 90px; }
.cnc-diff .cnc-perclass { max-height: 330px; overflow: auto; border: 1px solid var(--jp-border-color3, #eee); }
.cnc-diff .cnc-perclass table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
.cnc-diff .cnc-perclass th { position: sticky; top: 0; background: var(--jp-layout-color2, #f4f4f4);
  font-weight: 600; }
.cnc-diff .cnc-perclass th, .cnc-diff .cnc-perclass td { padding: 2px 8px; text-align: right; white-space: nowrap; }
.cnc-diff .cnc-perclass td:first-child, .cnc-diff .cnc-perclass th:first-child,
.cnc-diff .cnc-perclass td:last-child, .cnc-diff .cnc-perclass th:last-child { text-align: left; }
.cnc-diff .cnc-down { color: var(--jp-error-color1, #c0392b); }
.cnc-diff .cnc-up { color: var(--jp-success-color1, #1e8449); }
.cnc-diff .cnc-filters { display: flex; gap: 10px; align-items: center; flex-wrap: wrap; padding: 6px 8px;
  border-top: 1px solid var(--jp-border-color3, #eee); }
.cnc-diff .cnc-filters label { display: inline-flex; gap: 4px; align-items: center; }
.cnc-diff .cnc-filters select, .cnc-diff .cnc-filters button, .cnc-diff .cnc-toolbar select,
.cnc-diff button { font: inherit; }
.cnc-diff .cnc-chip { padding: 1px 6px; border-radius: 10px; background: #ffe0c2; color: #222; }
.cnc-diff .cnc-count { margin-left: auto; font-variant-numeric: tabular-nums; }
.cnc-diff .cnc-table { height: ${BODY}px; overflow: auto; position: relative;
  border-top: 1px solid var(--jp-border-color2, #ddd); }
.cnc-diff .cnc-head { position: sticky; top: 0; z-index: 2; display: grid; height: ${HEAD}px;
  background: var(--jp-layout-color2, #f4f4f4); border-bottom: 1px solid var(--jp-border-color2, #ddd); }
.cnc-diff .cnc-head button { all: unset; cursor: pointer; font-weight: 600; padding: 0 6px; display: flex;
  flex-direction: column; justify-content: center; overflow: hidden; white-space: nowrap; }
.cnc-diff .cnc-head button span { overflow: hidden; text-overflow: ellipsis; }
.cnc-diff .cnc-head .cnc-head-model { font-weight: 400; font-size: 11px; color: var(--jp-ui-font-color2, #666); }
.cnc-diff .cnc-head button.cnc-num { align-items: flex-end; }
.cnc-diff .cnc-head button:focus-visible { outline: 2px solid #1f77b4; }
.cnc-diff .cnc-rows { position: relative; }
.cnc-diff .cnc-row { position: absolute; left: 0; display: grid; height: ${ROW}px; align-items: center;
  border-bottom: 1px solid var(--jp-border-color3, #f0f0f0); cursor: pointer; font-variant-numeric: tabular-nums; }
.cnc-diff .cnc-row:hover { background: var(--jp-layout-color2, #f6f6f6); }
.cnc-diff .cnc-row[aria-selected="true"] { background: rgba(255, 127, 14, 0.18); }
.cnc-diff .cnc-row > div { padding: 0 6px; overflow: hidden; white-space: nowrap; text-overflow: ellipsis; }
.cnc-diff .cnc-row .cnc-num { text-align: right; }
.cnc-diff .cnc-row .cnc-wrong { color: var(--jp-error-color1, #c0392b); }
.cnc-diff .cnc-row .cnc-changed { font-weight: 700; }
.cnc-diff .cnc-thumb { width: 24px; height: 24px; image-rendering: pixelated; display: block;
  border: 1px solid var(--jp-border-color3, #ddd); }
.cnc-diff .cnc-pending { color: var(--jp-ui-font-color3, #aaa); }
.cnc-diff .cnc-note { padding: 4px 8px 6px; color: var(--jp-ui-font-color2, #666); min-height: 16px; }
.cnc-diff .cnc-empty { padding: 24px; color: var(--jp-ui-font-color2, #666); }
.cnc-diff .cnc-no-rows { position: absolute; top: 16px; left: 16px; color: var(--jp-ui-font-color2, #666); }
`;
