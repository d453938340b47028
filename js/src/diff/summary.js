// The classification diff's summary table: accuracy and its change, agreement, error Jaccard,
// kNN, OOD agreement and adversarial overlap per compared model; the adversarial cell runs
// the attack in the kernel when asked ("compute") and counts the seconds while it runs.
//
// `view` (views/diff.js) holds model, d, kernel, adversarial (model -> {status, started,
// message, value}) and dom.summaryBox.
import { html } from "../shared/dom.js";
import { formatPercent } from "../shared/format.js";

export const pct = (v) => formatPercent(v);
export const num = (v, d = 3) => (Number.isFinite(v) ? (Math.abs(v) >= 1e-3 || v === 0 ? v.toFixed(d) : v.toExponential(1)) : "n/a");

export function drawSummary(view) {
  const { model, d } = view;
  const summaryBox = view.dom.summaryBox;
  summaryBox.replaceChildren();
  if (!d) return;
  const explain = model.get("explain") || {};
  const rows = model.get("summary") || [];
  const th = (text, key) => html("th", { text, title: explain[key] || "" });
  const header = html("tr", {}, [th("model", ""), th("accuracy", "accuracy"), th("\u0394 accuracy", "accuracy"),
    th("agreement", "agreement"), th("error Jaccard", "error_jaccard"), th("kNN@10", "knn"),
    th("OOD agreement", "ood"), th("adversarial overlap", "adversarial")]);
  const body = rows.map((r, k) => {
    const ref = k === 0;
    const delta = ref ? null : r.accuracy - rows[0].accuracy;
    const cells = [
      html("td", { title: r.name }, [r.name, ref ? html("span", { class: "cnc-ref-tag", text: "reference" }) : null]),
      html("td", { text: pct(r.accuracy) }),
      html("td", { class: delta < 0 ? "cnc-down" : delta > 0 ? "cnc-up" : "",
        text: ref ? "" : `${delta >= 0 ? "+" : "\u2212"}${(100 * Math.abs(delta)).toFixed(2)} pts` }),
    ];
    if (ref) {
      cells.push(...[0, 1, 2, 3, 4].map(() => html("td", { class: "cnc-muted", text: "\u2014" })));
    } else {
      cells.push(html("td", { text: pct(r.agreement) }), html("td", { text: num(r.error_jaccard) }),
        html("td", { text: num(r.knn), title: r.knn_error || "" }),
        html("td", { text: num(r.ood), title: r.ood_error || "" }), adversarialCell(view, r));
    }
    return html("tr", { "data-model": r.name, "aria-selected": "true" }, cells);
  });
  summaryBox.append(html("table", { class: "cnc-summary" }, [html("thead", {}, [header]), html("tbody", {}, body)]));
}

function adversarialCell(view, r) {
  const td = html("td", { class: "cnc-adversarial" });
  const entry = view.adversarial.get(r.name);
  if (r.adversarial !== null && r.adversarial !== undefined) {
    const info = r.adversarial_info || {};
    td.textContent = num(r.adversarial);
    td.title = `${info.attack || "attack"}, eps ${num(info.eps)}, ${info.instances || "?"} instances; ` +
      `flipped: ${info.flipped_a} (${info.source_a}) / ${info.flipped_b} (${info.source_b})`;
    return td;
  }
  if (entry && entry.status === "running") {
    const secs = Math.round((performance.now() - entry.started) / 1000);
    td.append(html("span", { class: "cnc-muted", text: `attacking\u2026 ${secs} s` }));
    return td;
  }
  if (entry && entry.status === "error") {
    td.append(html("span", { class: "cnc-down", text: "failed", title: entry.message || "" }));
    return td;
  }
  if (view.kernel === "none") {
    td.append(html("span", { class: "cnc-muted", text: "needs a running kernel",
      title: "Adversarial overlap runs attacks in the kernel; open the notebook with a kernel to compute it" }));
    return td;
  }
  const button = html("button", { type: "button", text: "compute", title: "Run the attack in the kernel (seconds to minutes)" });
  button.addEventListener("click", () => {
    view.adversarial.set(r.name, { status: "running", started: performance.now() });
    view.model.send({ type: "adversarial", model: r.name });
    drawSummary(view);
  });
  td.append(button);
  return td;
}

// While an attack runs, the summary redraws (its seconds count) every second.
export function attackTicker(view) {
  return () => {
    if ([...view.adversarial.values()].some((e) => e.status === "running")) drawSummary(view);
  };
}
