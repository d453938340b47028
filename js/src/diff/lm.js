// The diff of language models: llama.cpp's statistics, the most frequent top-1 substitutions,
// one row per sequence (sortable by mean KL, NLL change, same-top fraction) and the selected
// sequence's text with every scored token tinted by its KL or its dp. Token texts are data:
// they reach the page through textContent only.
import { html } from "../shared/dom.js";
import { unpack } from "../shared/wire.js";
import { fixed, notesBox, percent, sig, signed, sortableTable, summaryTable, visible } from "./rows.js";

export const LM_CSS = `
.cnc-diff .cnc-lm-top { display: flex; gap: 16px; flex-wrap: wrap; align-items: flex-start; padding: 6px 8px; }
.cnc-diff .cnc-tokens { font-family: var(--jp-code-font-family, monospace); font-size: 12.5px; line-height: 1.9;
  white-space: pre-wrap; word-break: break-word; }
.cnc-diff .cnc-token { border-radius: 2px; padding: 1px 0; cursor: default; outline: none; }
.cnc-diff .cnc-token:focus-visible, .cnc-diff .cnc-token:hover { box-shadow: 0 0 0 1px var(--jp-ui-font-color1, #222); }
.cnc-diff .cnc-token.cnc-changed-top { text-decoration: underline dotted; text-underline-offset: 3px; }
.cnc-diff .cnc-token-first { color: var(--jp-ui-font-color2, #666); }
.cnc-diff .cnc-tint-legend { display: flex; align-items: center; gap: 6px; margin: 4px 0; flex-wrap: wrap; }
.cnc-diff .cnc-tint-bar { width: 160px; height: 10px; border-radius: 2px; border: 1px solid var(--jp-border-color2, #ccc); }
`;

const ORANGE = [230, 97, 1];
const BLUE = [33, 102, 172];
const MAX_ALPHA = 0.65; // the strongest tint still leaves the text readable in both themes

function tint(rgb, t) {
  return `rgba(${rgb[0]}, ${rgb[1]}, ${rgb[2]}, ${(MAX_ALPHA * Math.min(1, Math.max(0, t))).toFixed(3)})`;
}

const SEQUENCE_COLS = [
  ["tokens", "tokens", "scored tokens of the sequence", (v) => String(Math.round(v))],
  ["nll_a", "NLL ref", "mean negative log-likelihood per token under the reference (nats)", fixed],
  ["nll_b", "NLL model", "mean negative log-likelihood per token under the compared model (nats)", fixed],
  ["nll_change", "\u0394NLL", "NLL model \u2212 NLL ref (nats per token); positive: the model is worse", signed],
  ["same_top", "same top", "fraction of the sequence's tokens whose top-1 is the same in both models", (v) => percent(v)],
  ["kl_mean", "KL mean", "mean over the sequence's tokens of KL(p_ref || p_model), nats", (v) => sig(v)],
  ["kl_max", "KL max", "largest token KL in the sequence, nats", (v) => sig(v)],
  ["dp_mean", "\u0394p mean", "mean of p_model(next) \u2212 p_ref(next), percentage points", (v) => signed(100 * v, 2)],
];

const pm = (v, s, f) => (Number.isFinite(s) ? `${f(v)} \u00b1 ${f(s)}` : f(v));
const nats = (d) => (v) => sig(v, d);
const pts = (v) => sig(100 * v, 3);

// Rows of the statistics table: [label with unit, explain key, format(stats)].
const STATS = [
  ["KL mean (nats)", "kl_mean", (s) => pm(s.kl_mean, s.kl_sem, nats(5))],
  ["KL median (nats)", "kl_median", (s) => sig(s.kl_median, 5)],
  ["KL p99.9 / p99 / p95 / p90", "kl_percentiles", (s) => [s.kl_p99_9, s.kl_p99, s.kl_p95, s.kl_p90].map(nats(5)).join(" / ")],
  ["KL p10 / p5 / p1 / p0.1", "kl_percentiles", (s) => [s.kl_p10, s.kl_p5, s.kl_p1, s.kl_p0_1].map(nats(6)).join(" / ")],
  ["KL max (nats)", "kl_max", (s) => sig(s.kl_max, 5)],
  ["same top (%)", "same_top", (s) => pm(s.same_top, s.same_top_sem, pts)],
  ["\u0394p mean (%)", "dp_mean", (s) => pm(s.dp_mean, s.dp_mean_sem, pts)],
  ["\u0394p rms (%)", "dp_rms", (s) => pm(s.dp_rms, s.dp_rms_sem, pts)],
  ["PPL ref", "ppl_a", (s) => pm(s.ppl_a, s.ppl_a_sem, nats(3))],
  ["PPL model", "ppl_b", (s) => pm(s.ppl_b, s.ppl_b_sem, nats(3))],
  ["PPL ratio", "ppl_ratio", (s) => pm(s.ppl_ratio, s.ppl_ratio_sem, nats(5))],
  ["ln PPL ratio (nats)", "ln_ppl_ratio", (s) => pm(s.ln_ppl_ratio, s.ln_ppl_ratio_sem, nats(5))],
  ["Cor(ln PPL ref, ln PPL model)", "logloss_corr", (s) => percent(s.logloss_corr, 2)],
  ["tokens", "tokens", (s) => String(Math.round(s.tokens))],
];

export function lmView({ model, box, tip, send, canAsk, previewText, idOf, selectedIds, choose }) {
  const state = { focus: 0, colour: "kl", row: null };
  const cache = new Map(); // row -> { first, models: [{position, token, kl, dp, nll_a, nll_b, top_a, top_b}] }
  const vocab = new Map();
  const pending = new Set();
  let view = null;

  function store(detail) {
    if (!detail || !detail.rows) return;
    const ids = unpack(detail.vocab_ids) || [];
    ids.forEach((id, k) => vocab.set(id, detail.vocab_texts[k]));
    const parts = (detail.models || []).map((m) => (m ? {
      offsets: unpack(m.offsets), position: unpack(m.position), token: unpack(m.token),
      kl: unpack(m.kl), dp: unpack(m.dp), nll_a: unpack(m.nll_a), nll_b: unpack(m.nll_b),
      top_a: unpack(m.top_a), top_b: unpack(m.top_b) } : null));
    detail.rows.forEach((r, k) => {
      pending.delete(r);
      cache.set(r, { first: detail.first[k], models: parts.map((p) => (p ? slice(p, p.offsets[k], p.offsets[k + 1]) : null)) });
    });
  }
  function slice(p, s, e) {
    const out = {};
    for (const key of ["position", "token", "kl", "dp", "nll_a", "nll_b", "top_a", "top_b"]) out[key] = p[key].subarray(s, e);
    return out;
  }
  const text = (id) => (vocab.has(id) ? vocab.get(id) : `#${id}`);

  function draw() {
    view = model.get("task_view") || {};
    cache.clear();
    vocab.clear();
    store(model.get("details"));
    const models = view.models || [];
    if (state.focus >= models.length) state.focus = 0;
    box.replaceChildren();
    const pick = html("select", { "aria-label": "Compared model" },
      models.map((m, k) => html("option", { value: String(k), text: m.name, selected: k === state.focus })));
    pick.addEventListener("change", () => { state.focus = Number(pick.value); draw(); });
    const entry = models[state.focus];
    if (!entry) return;
    const notes = [...new Set(models.flatMap((m) => m.notes || []))];
    if (models.length > 1) box.append(html("div", { class: "cnc-section" }, [html("label", { text: "sequences and tokens for " }, [pick])]));
    const note = notesBox(notes);
    if (note) box.append(note);
    box.append(statsBox(models), substitutionsBox(entry));
    const columns = Object.fromEntries(Object.entries(entry.columns || {}).map(([k, v]) => [k, unpack(v)]));
    const cols = [
      { key: "id", label: "id", value: (i) => i, cell: (i) => idOf(i) },
      { key: "text", label: "text", text: true, cell: (i) => { const t = previewText(i); return typeof t === "string" ? t : "\u2026"; } },
      ...SEQUENCE_COLS.filter(([key]) => columns[key]).map(([key, label, title, fmt]) => ({
        key, label, title, value: (i) => columns[key][i], cell: (i) => fmt(columns[key][i]) })),
    ];
    const table = sortableTable({ cols, n: view.n, idOf, selected: selectedIds, label: "Sequences",
      onPick: (i, id) => { state.row = i; choose(id); table.draw(); drawSequence(); } });
    if (columns.kl_mean) { table.state.key = "kl_mean"; }
    table.draw();
    const detail = html("div", { class: "cnc-detail cnc-sequence", "aria-live": "polite" });
    box.append(html("div", { class: "cnc-section" }, [table.count]), table.el, detail);
    if (entry.missing) box.append(html("div", { class: "cnc-note", text: entry.missing }));
    state.detail = detail;
    if (state.row === null || state.row >= view.n) state.row = firstChosen() ?? 0;
    drawSequence();
  }

  function firstChosen() {
    const chosen = selectedIds();
    for (let i = 0; i < (view ? view.n : 0); i += 1) if (chosen.has(idOf(i))) return i;
    return null;
  }

  function statsBox(models) {
    const withStats = models.filter((m) => m.stats);
    const box = html("div", { class: "cnc-lm-top" });
    if (!withStats.length) {
      box.append(html("div", { class: "cnc-muted", text: (models[0] && models[0].missing) || "No token statistics." }));
      return box;
    }
    box.append(html("div", { class: "cnc-summary-box" }, [
      html("h4", { text: `Token statistics against ${model.get("reference")} (llama.cpp --kl-divergence)` }),
      summaryTable(withStats, STATS.map(([label, key, f]) => [label, key, (e) => f(e.stats)]), view.explain || {}),
    ]));
    return box;
  }

  function substitutionsBox(entry) {
    const subs = entry.substitutions || [];
    const ref = model.get("reference");
    const box = html("div", { class: "cnc-section" });
    box.append(html("h4", { text: `Most frequent top-1 substitutions: ${ref} \u2192 ${entry.name}`,
      title: "pairs (reference's top-1 token, compared model's top-1 token) over the scored tokens where they differ; whitespace shown as \u2423 and \u23ce" }));
    if (!subs.length) { box.append(html("div", { class: "cnc-muted", text: entry.stats ? "The top-1 token never changes." : "" })); return box; }
    const rows = subs.map(([a, b, count]) => html("tr", { "data-substitution": "" }, [
      html("td", {}, [html("code", { class: "cnc-tok", text: visible(a) })]),
      html("td", { text: "\u2192" }),
      html("td", {}, [html("code", { class: "cnc-tok", text: visible(b) })]),
      html("td", { text: `${count.toLocaleString()}\u00d7` })]));
    box.append(html("div", { class: "cnc-subs" }, [html("table", {}, [html("tbody", {}, rows)])]));
    return box;
  }

  function drawSequence() {
    const detail = state.detail;
    if (!detail || !view || state.row === null) return;
    const r = state.row;
    const entry = (view.models || [])[state.focus];
    detail.replaceChildren();
    const switcher = html("select", { "aria-label": "Tint tokens by" }, [
      html("option", { value: "kl", text: "KL(p_ref || p_model), nats", selected: state.colour === "kl" }),
      html("option", { value: "dp", text: "\u0394p = p_model(next) \u2212 p_ref(next)", selected: state.colour === "dp" }),
    ]);
    switcher.addEventListener("change", () => { state.colour = switcher.value; drawSequence(); });
    detail.append(html("h4", { text: `Sequence ${idOf(r)}: ${entry.name} against ${model.get("reference")}` }),
      html("label", { text: "tint by " }, [switcher]));
    const got = cache.get(r);
    if (!got) {
      const ask = canAsk();
      detail.append(html("div", { class: "cnc-muted", text: ask
        ? "loading its tokens\u2026" : `Tokens are embedded for the first ${view.embedded} sequences; the rest need a running kernel.` }));
      if (ask && !pending.has(r)) { pending.add(r); send({ type: "tokens", rows: [r] }); }
      return;
    }
    const t = got.models[state.focus];
    if (!t) { detail.append(html("div", { class: "cnc-muted", text: entry.missing || "no token comparison" })); return; }
    const values = state.colour === "kl" ? t.kl : t.dp;
    let top = 0;
    for (const v of values) top = Math.max(top, Math.abs(v));
    const legend = html("div", { class: "cnc-tint-legend", "data-range": `${top}` });
    const bar = html("span", { class: "cnc-tint-bar" });
    if (state.colour === "kl") {
      bar.style.background = `linear-gradient(to right, ${tint(ORANGE, 0)}, ${tint(ORANGE, 1)})`;
      legend.append(html("span", { text: "0" }), bar, html("span", { text: `${sig(top)} nats` }),
        html("span", { class: "cnc-muted", text: `linear from 0 to this sequence's largest token KL; mean ${sig(mean(values))} nats` }));
    } else {
      bar.style.background = `linear-gradient(to right, ${tint(BLUE, 1)}, ${tint(BLUE, 0)}, ${tint(ORANGE, 1)})`;
      legend.append(html("span", { text: `\u2212${(100 * top).toFixed(2)} pts` }), bar,
        html("span", { text: `+${(100 * top).toFixed(2)} pts` }),
        html("span", { class: "cnc-muted", text: "blue: the model gives the next token less probability; orange: more; symmetric, linear" }));
    }
    if (top === 0) legend.append(html("span", { class: "cnc-muted", text: "(all zero: no tint)" }));
    const flow = html("div", { class: "cnc-tokens", role: "list", "aria-label": `tokens of sequence ${idOf(r)}` });
    if (got.first >= 0) flow.append(html("span", { class: "cnc-token-first", text: text(got.first), title: "first token: not predicted" }));
    for (let k = 0; k < t.token.length; k += 1) {
      const v = values[k];
      const span = html("span", { class: "cnc-token", role: "listitem", tabindex: 0,
        "data-position": t.position[k], text: text(t.token[k]) });
      span.style.background = state.colour === "kl" ? tint(ORANGE, top > 0 ? v / top : 0)
        : tint(v < 0 ? BLUE : ORANGE, top > 0 ? Math.abs(v) / top : 0);
      if (t.top_a[k] !== t.top_b[k]) span.classList.add("cnc-changed-top");
      const show = (event) => tip.show({
        title: `token ${visible(text(t.token[k]))} at position ${t.position[k]}`,
        rows: [
          ["KL (nats)", sig(t.kl[k], 5)],
          ["\u0394p (pts)", signed(100 * t.dp[k], 2)],
          [`p(this token), ${model.get("reference")}`, percent(Math.exp(-t.nll_a[k]), 2)],
          [`p(this token), ${entry.name}`, percent(Math.exp(-t.nll_b[k]), 2)],
          [`top-1, ${model.get("reference")}`, visible(text(t.top_a[k]))],
          [`top-1, ${entry.name}`, visible(text(t.top_b[k]))],
        ],
        notes: t.top_a[k] !== t.top_b[k] ? ["the top-1 token changed (dotted underline)"] : [],
      }, event);
      for (const name of ["mouseenter", "mousemove", "focus"]) span.addEventListener(name, show);
      for (const name of ["mouseleave", "blur"]) span.addEventListener(name, () => tip.hide());
      flow.append(span);
    }
    detail.append(legend, flow);
  }

  function mean(values) {
    let s = 0;
    for (const v of values) s += v;
    return values.length ? s / values.length : NaN;
  }

  return {
    draw,
    redrawRows: () => draw(),
    onMessage(msg) {
      if (msg.type !== "tokens") return;
      store(msg);
      drawSequence();
    },
  };
}
