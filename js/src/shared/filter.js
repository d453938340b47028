// Filtered-out models: every view dims them (still clickable) through one hook.
//
// API:
//   markFiltered(root, names)   sets data-filtered="out" on root's [data-model] marks whose
//                               model is in `names` (an array or Set) and removes it elsewhere
//   isOut(filters, metrics)     the same rule as Python's ModelRegistry.filtered_out():
//                               filters is {metric: [low, high]} (null = open end), metrics a
//                               model's {metric: value}; out when any filtered metric is
//                               missing or outside [low, high]
// Python side: a view syncs `filtered_out` (list of names) kept current by
// widgets._sync.link_filters(widget, registry); call markFiltered after each draw and on
// change:filtered_out.

export function markFiltered(root, names) {
  const out = names instanceof Set ? names : new Set(names || []);
  for (const mark of root.querySelectorAll("[data-model]")) {
    if (out.has(mark.getAttribute("data-model"))) mark.setAttribute("data-filtered", "out");
    else mark.removeAttribute("data-filtered");
  }
}

export function isOut(filters, metrics) {
  for (const [metric, range] of Object.entries(filters || {})) {
    const v = (metrics || {})[metric];
    if (typeof v !== "number" || !Number.isFinite(v)) return true;
    const [lo, hi] = range || [];
    if ((lo !== null && lo !== undefined && v < lo) || (hi !== null && hi !== undefined && v > hi)) {
      return true;
    }
  }
  return false;
}
