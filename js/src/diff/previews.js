// The classification diff's instance previews: the images or texts embedded in the model,
// those the kernel sends for the rows in view, the cell that shows one, and the note that
// says which are available.
//
// `view` (views/diff.js) holds model, d (decoded data), kernel ("live", "none", "unknown"),
// previewCache (row -> ImageData | string), pending (rows asked for), requestTimer, state.order
// and dom.scroller, dom.note.
import { html, truncate } from "../shared/dom.js";
import { idOf, visibleRange } from "./data.js";

export const previewKind = (model) => (model.get("previews") || {}).kind || "none";

export function loadEmbedded(view) {
  view.previewCache.clear();
  const p = view.model.get("previews") || {};
  if (p.kind === "image" && p.data) {
    const bytes = new Uint8Array(p.data.buffer || p.data, p.data.byteOffset || 0, p.data.byteLength);
    storeImages(view.previewCache, range(p.count || 0), p.shape, bytes);
  } else if (p.kind === "text") {
    (p.texts || []).forEach((text, r) => view.previewCache.set(r, text));
  }
}

function range(k) { return [...Array(k).keys()]; }

function storeImages(cache, rows, shape, bytes) {
  const [h, w] = shape;
  const channels = shape.length === 3 ? shape[2] : 1;
  rows.forEach((r, k) => {
    const img = new ImageData(w, h);
    const base = k * h * w * channels;
    for (let p = 0; p < h * w; p += 1) {
      for (let c = 0; c < 3; c += 1) img.data[4 * p + c] = bytes[base + p * channels + (channels === 3 ? c : 0)];
      img.data[4 * p + 3] = 255;
    }
    cache.set(r, img);
  });
}

// The kernel's answer to a "rows" request.
export function storeRows(view, msg, buffers) {
  for (const r of msg.rows) view.pending.delete(r);
  if (msg.kind === "image" && buffers && buffers.length) {
    const b = buffers[0];
    storeImages(view.previewCache, msg.rows, msg.shape, new Uint8Array(b.buffer || b, b.byteOffset || 0, b.byteLength));
  } else if (msg.kind === "text") {
    msg.rows.forEach((r, k) => view.previewCache.set(r, msg.texts[k]));
  }
}

// Ask the kernel for the previews of the rows in view it has not sent yet (debounced).
export function requestVisible(view) {
  if (view.kernel !== "live" || !view.d) return;
  clearTimeout(view.requestTimer);
  view.requestTimer = setTimeout(() => {
    const p = view.model.get("previews") || {};
    if (p.kind !== "image" && p.kind !== "text") return;
    const [a, b] = visibleRange(view.dom.scroller.scrollTop, view.state.order.length);
    const want = [];
    for (let k = a; k < b; k += 1) {
      const r = view.state.order[k];
      if (!view.previewCache.has(r) && !view.pending.has(r)) want.push(r);
    }
    if (!want.length) return;
    want.forEach((r) => view.pending.add(r));
    view.model.send({ type: "rows", rows: want });
  }, 60);
}

export function previewNode(view, i) {
  const item = view.previewCache.get(i);
  if (item instanceof ImageData) {
    const canvas = html("canvas", { class: "cnc-thumb", width: item.width, height: item.height, role: "img",
      "aria-label": `instance ${idOf(view.d, i)}` });
    canvas.getContext("2d").putImageData(item, 0, 0);
    return canvas;
  }
  if (typeof item === "string") {
    // Dataset text is untrusted: textContent only, whole text on hover.
    const span = html("span", { text: truncate(item, 200), title: item });
    return span;
  }
  const kind = previewKind(view.model);
  if (kind === "none") return html("span", { class: "cnc-pending", text: "" });
  return html("span", { class: "cnc-pending", text: view.kernel === "none" ? "n/a" : "\u2026",
    title: view.kernel === "none" ? "beyond the embedded previews; needs a running kernel" : "loading" });
}

export function updateNote(view) {
  const { d, kernel } = view;
  const note = view.dom.note;
  const p = view.model.get("previews") || {};
  note.replaceChildren();
  if (!d) return;
  const bits = [];
  if (p.kind === "image" || p.kind === "text") {
    const count = p.count || 0;
    if (count < d.n) {
      bits.push(kernel === "none"
        ? `Previews embedded for the first ${count.toLocaleString()} of ${d.n.toLocaleString()} instances; the rest need a running kernel.`
        : `Previews of the first ${count.toLocaleString()} instances are embedded; the rest load from the kernel as you scroll.`);
    }
  } else bits.push("No instance previews: pass instances= to reg.set_data to see them here.");
  bits.push("Click a row to select it (shift adds); diff.selected_instances holds the ids.");
  note.textContent = bits.join(" ");
}
