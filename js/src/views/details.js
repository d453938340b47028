// Selection details: one model's metrics and operation chain, or bar charts comparing a few.
import { html, formatParams } from "../shared/dom.js";
import { addStyles } from "../shared/styles.js";
import { drawChart } from "../shared/vega.js";
import { listen } from "../shared/listen.js";

function chainItem(step, i) {
  const label = i === 0 ? `${step.name} (root)` : `${step.operation || "?"}${formatParams(step.params) ? ` (${formatParams(step.params)})` : ""} \u2192 ${step.name}`;
  return html("li", { "data-model": step.name, text: label });
}

function dtypeList(items) {
  return items.map((b) => `${b.dtype} ${b.text}`).join(", ") || "\u2014";
}

// Why the model has its size: what the operation changed and left, bytes by dtype.
function sizeSection(sizes) {
  const items = [
    html("li", { text: `stored: ${dtypeList(sizes.bytes_by_dtype)}` }),
    html("li", { text: `parent: ${dtypeList(sizes.parent_bytes_by_dtype)}` }),
    ...sizes.lines.map((line) => html("li", { text: line })),
  ];
  const changed = html("details", { class: "cnc-size-changes" }, [
    html("summary", { text: `modules changed (${sizes.changed.length})` }),
    html("ul", {}, sizes.changed.map((c) => html("li", { "data-module": c.module, text: `${c.module}: ${c.how}` }))),
  ]);
  return html("section", { class: "cnc-sizes", "aria-label": "Why this size" }, [
    html("h4", { text: "Why this size" }), html("ul", {}, items), changed,
  ]);
}

function render({ model, el }) {
  const root = html("div", { class: "cnc-view cnc-details", tabindex: -1 });
  addStyles();
  el.append(root);
  const title = html("span", { class: "cnc-title", text: "Selection" });
  const clear = html("button", { type: "button", text: "Clear", title: "Clear the selection (Escape)" });
  const body = html("div", { class: "cnc-details-body" });
  root.append(html("div", { class: "cnc-toolbar" }, [title, clear]), body);
  let charts = [];

  function clearSelection() {
    model.set("selected", []);
    model.save_changes();
  }

  function draw() {
    for (const c of charts) c.then((h) => h.finalize()).catch(() => {});
    charts = [];
    const d = model.get("details") || {};
    body.replaceChildren();
    clear.disabled = d.mode === "empty" || !d.mode;
    if (!d.mode || d.mode === "empty") {
      title.textContent = "Selection";
      body.append(html("div", { class: "cnc-empty", text: d.message || "Nothing selected" }));
      return;
    }
    if (d.mode === "one") {
      title.textContent = `Selection: ${d.name}`;
      body.append(html("h4", { text: "How it was made" }),
        html("ol", { class: "cnc-chain", "aria-label": `Operations from the root to ${d.name}` }, d.chain.map(chainItem)));
      const rows = d.metrics.map((m) => html("tr", { "data-metric": m.metric }, [
        html("th", { scope: "row", text: m.metric, title: m.description || undefined }), html("td", { text: m.text }),
      ]));
      body.append(html("h4", { text: "Metrics" }),
        rows.length ? html("table", { class: "cnc-metrics" }, rows)
          : html("div", { class: "cnc-empty", text: "not evaluated yet: reg.evaluate()" }));
      if (d.sizes) body.append(sizeSection(d.sizes));
      return;
    }
    title.textContent = `Selection: ${d.names.length} models`;
    if (d.warning) body.append(html("div", { class: "cnc-warning", role: "alert", text: `\u26a0 ${d.warning}` }));
    else if (d.varying) body.append(html("div", { class: "cnc-note", text: `comparable: they differ only in ${d.varying}` }));
    if (d.more > 0) body.append(html("div", { class: "cnc-note", text: `showing the first ${d.names.length}; ${d.more} more selected` }));
    const head = html("tr", {}, [html("th", { text: "parameter" }), ...d.names.map((n) => html("th", { text: n, "data-model": n }))]);
    const rows = d.comparability.map((r) => html("tr", { class: r.status === "differs" ? "cnc-differs" : "", "data-status": r.status }, [
      html("th", { scope: "row", text: r.parameter }),
      ...r.values.map((v) => html("td", { text: v === null || v === undefined ? "\u2014" : String(v) })),
    ]));
    body.append(html("details", { class: "cnc-comparability", open: Boolean(d.warning) }, [
      html("summary", { text: "What differs along their provenance paths" }),
      html("div", { class: "cnc-scroll-x" }, [html("table", { class: "cnc-metrics" }, [head, ...rows])]),
    ]));
    const grid = html("div", { class: "cnc-charts" });
    body.append(grid);
    for (const spec of d.charts) {
      const box = html("div", { class: "cnc-chart", "data-metric": spec.title || "" });
      grid.append(box);
      charts.push(drawChart(box, spec));
    }
  }

  clear.addEventListener("click", clearSelection);
  root.addEventListener("keydown", (event) => {
    if (event.key === "Escape") clearSelection();
  });
  const unlisten = listen(model, { "change:details": draw });
  draw();
  // Charts read the theme's colours when drawn: draw again when JupyterLab's theme changes.
  const themeWatch = new MutationObserver(() => draw());
  themeWatch.observe(document.body, { attributes: true, attributeFilter: ["data-jp-theme-light"] });
  return () => {
    themeWatch.disconnect();
    unlisten();
    for (const c of charts) c.then((h) => h.finalize()).catch(() => {});
  };
}

export default { render };
