// The diff of answer tasks (generation, extractive QA): EM/F1 and agreement per compared model,
// one row per question with both answers side by side (the words that differ marked), sortable
// by F1 change; a click shows the question, the gold answers, both answers and (extractive QA)
// the context with both spans marked. All of it is data: textContent only.
import { html } from "../shared/dom.js";
import { unpack } from "../shared/wire.js";
import { fixed, notesBox, percent, signed, sortableTable, summaryTable } from "./rows.js";

export const ANSWERS_CSS = `
.cnc-diff .cnc-context { white-space: pre-wrap; line-height: 1.6; max-width: 900px; }
.cnc-diff .cnc-span-a { background: rgba(33, 102, 172, 0.30); border-bottom: 2px solid #2166ac; }
.cnc-diff .cnc-span-b { background: rgba(230, 97, 1, 0.30); border-bottom: 2px solid #e66101; }
.cnc-diff .cnc-span-a.cnc-span-b { background: rgba(120, 100, 120, 0.40); }
.cnc-diff .cnc-qa-fields { display: grid; grid-template-columns: max-content 1fr; gap: 2px 10px; margin-bottom: 6px; }
.cnc-diff .cnc-qa-fields > div:nth-child(odd) { color: var(--jp-ui-font-color2, #666); }
.cnc-diff .cnc-key-a { border-bottom: 2px solid #2166ac; }
.cnc-diff .cnc-key-b { border-bottom: 2px solid #e66101; }
`;

// The answer's words, those absent from the other answer marked (case-insensitive).
export function markedWords(answer, other) {
  const theirs = new Map();
  for (const w of String(other).toLowerCase().split(/\s+/).filter(Boolean)) theirs.set(w, (theirs.get(w) || 0) + 1);
  const out = html("span");
  const words = String(answer).split(/(\s+)/);
  for (const w of words) {
    if (!w) continue;
    if (/^\s+$/.test(w)) { out.append(w); continue; }
    const key = w.toLowerCase();
    const left = theirs.get(key) || 0;
    if (left > 0) { theirs.set(key, left - 1); out.append(w); } else out.append(html("span", { class: "cnc-word-diff", text: w }));
  }
  if (!String(answer).trim()) out.append(html("span", { class: "cnc-muted", text: "(no answer)" }));
  return out;
}

// The context with the two spans marked: segments between the spans' ends, each a text node
// or a span whose classes say whose answer covers it.
export function markedContext(context, spans) {
  const cuts = new Set([0, context.length]);
  for (const s of spans) if (s) { cuts.add(Math.min(s[0], context.length)); cuts.add(Math.min(s[1], context.length)); }
  const points = [...cuts].sort((a, b) => a - b);
  const out = html("div", { class: "cnc-context" });
  for (let k = 0; k + 1 < points.length; k += 1) {
    const [lo, hi] = [points[k], points[k + 1]];
    const piece = context.slice(lo, hi);
    const covers = spans.map((s) => s && s[0] <= lo && hi <= s[1]);
    if (!covers.some(Boolean)) { out.append(piece); continue; }
    const cls = [covers[0] ? "cnc-span-a" : "", covers[1] ? "cnc-span-b" : ""].filter(Boolean).join(" ");
    out.append(html("span", { class: cls, text: piece, "data-span": covers.map((c) => (c ? 1 : 0)).join("") }));
  }
  return out;
}

const MEASURES = [
  ["EM ref", "exact_match", (s) => percent(s.exact_match_a)],
  ["EM model", "exact_match", (s) => percent(s.exact_match_b)],
  ["F1 ref", "f1", (s) => percent(s.f1_a)],
  ["F1 model", "f1", (s) => percent(s.f1_b)],
  ["\u0394F1 (pts)", "f1_change", (s) => signed(100 * s.f1_change, 1)],
  ["agreement", "agreement", (s) => percent(s.agreement)],
  ["error Jaccard", "error_jaccard", (s) => fixed(s.error_jaccard)],
  ["mean KL (nats)", "mean_kl", (s) => fixed(s.mean_kl, 4)],
];

export function answersView({ model, box, send, canAsk, previewText, idOf, selectedIds, choose }) {
  const state = { focus: 0, row: null };
  const contexts = new Map(); // row -> { context, spans: [per model [s, e] | null] }
  const pending = new Set();
  let view = null;

  function store(detail) {
    if (!detail || !detail.rows) return;
    detail.rows.forEach((r, k) => {
      pending.delete(r);
      contexts.set(r, { context: detail.contexts ? detail.contexts[k] : null,
        spans: detail.spans ? detail.spans.map((s) => s[k]) : null });
    });
  }

  function draw() {
    view = model.get("task_view") || {};
    contexts.clear();
    store(model.get("details"));
    const models = view.models || [];
    if (state.focus >= models.length) state.focus = 0;
    box.replaceChildren();
    const entry = models[state.focus];
    if (!entry) return;
    const ref = model.get("reference");
    const note = notesBox([...new Set(models.flatMap((m) => m.notes || []))]);
    if (note) box.append(note);
    const present = MEASURES.filter(([, key]) => key !== "mean_kl" || models.some((m) => Number.isFinite(m.summary.mean_kl)));
    box.append(html("div", { class: "cnc-section cnc-summary-box" }, [
      html("h4", { text: `Answers against ${ref} (${view.task === "extractive_qa" ? "extractive QA" : "generation"}, SQuAD v1.1 scores)` }),
      summaryTable(models, present.map(([label, key, f]) => [label, key, (e) => f(e.summary)]), view.explain || {}),
    ]));
    if (models.length > 1) {
      const pick = html("select", { "aria-label": "Compared model" },
        models.map((m, k) => html("option", { value: String(k), text: m.name, selected: k === state.focus })));
      pick.addEventListener("change", () => { state.focus = Number(pick.value); draw(); });
      box.append(html("div", { class: "cnc-section" }, [html("label", { text: "questions for " }, [pick])]));
    }
    const col = Object.fromEntries(Object.entries(entry.columns).map(([k, v]) => [k, unpack(v)]));
    const same = unpack(entry.same_output);
    const outA = view.output_a || [];
    const outB = entry.output_b || [];
    const cols = [
      { key: "id", label: "id", value: (i) => i, cell: (i) => idOf(i) },
      { key: "question", label: "question", text: true, cell: (i) => { const t = previewText(i); return typeof t === "string" ? t : "\u2026"; } },
      { key: "gold", label: "gold", text: true, cell: (i) => (view.gold || [])[i] || "" },
      { key: "answer_a", label: `answer ${ref}`, text: true, cell: (i) => markedWords(outA[i] || "", outB[i] || "") },
      { key: "answer_b", label: `answer ${entry.name}`, text: true, cell: (i) => markedWords(outB[i] || "", outA[i] || "") },
      { key: "same", label: "same", title: "normalised answers equal", value: (i) => same[i], cell: (i) => (same[i] ? "\u2713" : "\u2717") },
      { key: "em_a", label: "EM ref", value: (i) => col.em_a[i], cell: (i) => fixed(col.em_a[i], 0) },
      { key: "em_b", label: "EM model", value: (i) => col.em_b[i], cell: (i) => fixed(col.em_b[i], 0) },
      { key: "f1_a", label: "F1 ref", value: (i) => col.f1_a[i], cell: (i) => fixed(col.f1_a[i], 2) },
      { key: "f1_b", label: "F1 model", value: (i) => col.f1_b[i], cell: (i) => fixed(col.f1_b[i], 2) },
      { key: "f1_change", label: "\u0394F1", title: "F1 model \u2212 F1 ref", value: (i) => col.f1_change[i], cell: (i) => signed(col.f1_change[i], 2) },
    ];
    const table = sortableTable({ cols, n: view.n, idOf, selected: selectedIds, label: "Questions",
      onPick: (i, id) => { state.row = i; choose(id); table.draw(); drawDetail(); } });
    table.draw();
    state.detail = html("div", { class: "cnc-detail cnc-question", "aria-live": "polite" });
    box.append(html("div", { class: "cnc-section" }, [table.count, html("span", { class: "cnc-muted",
      text: " Click a question for its context; words one answer has and the other lacks are marked." })]), table.el, state.detail);
    drawDetail();
  }

  function drawDetail() {
    const detail = state.detail;
    if (!detail || state.row === null) return;
    const r = state.row;
    const entry = view.models[state.focus];
    const ref = model.get("reference");
    const a = (view.output_a || [])[r] || "";
    const b = (entry.output_b || [])[r] || "";
    const question = previewText(r);
    detail.replaceChildren(html("h4", { text: `Question ${idOf(r)}` }), html("div", { class: "cnc-qa-fields" }, [
      html("div", { text: "question" }), html("div", { text: typeof question === "string" ? question : "\u2026" }),
      html("div", { text: "gold" }), html("div", { text: (view.gold || [])[r] || "" }),
      html("div", {}, [html("span", { class: "cnc-key-a", text: `answer ${ref}` })]), html("div", {}, [markedWords(a, b)]),
      html("div", {}, [html("span", { class: "cnc-key-b", text: `answer ${entry.name}` })]), html("div", {}, [markedWords(b, a)]),
    ]));
    if (view.task !== "extractive_qa") return;
    const got = contexts.get(r);
    if (!got) {
      const ask = canAsk();
      detail.append(html("div", { class: "cnc-muted", text: ask ? "loading the context\u2026"
        : `Contexts are embedded for the first ${view.embedded} questions; the rest need a running kernel.` }));
      if (ask && !pending.has(r)) { pending.add(r); send({ type: "context", rows: [r] }); }
      return;
    }
    const spans = got.spans ? [got.spans[0], got.spans[state.focus + 1]] : [null, null];
    detail.append(html("div", { class: "cnc-muted", text: "context (blue: reference's span, orange: compared model's, both: grey)" }),
      markedContext(got.context || "", spans));
  }

  return {
    draw,
    onMessage(msg) {
      if (msg.type !== "context") return;
      store(msg);
      drawDetail();
    },
  };
}
