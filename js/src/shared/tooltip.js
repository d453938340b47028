// One tooltip for every view: a title, a subtitle, a table of [label, value] rows and notes,
// placed beside the pointer (or the focused mark) and kept inside the view's root.
//
// API:
//   const tip = tooltip(root);        appends a hidden <div class="cnc-tooltip" role="tooltip">
//   tip.show({ title, sub, rows: [[label, value, hover?]], notes: [text] }, event)
//       event: a pointer event (clientX/Y) or a focus event (placed at its target's corner)
//   tip.hide()
//   tip.el                            the element
// Text only ever reaches the page through textContent.
import { html } from "./dom.js";

export function tooltip(root) {
  const el = html("div", { class: "cnc-tooltip", role: "tooltip" });
  el.style.display = "none";
  root.append(el);

  function place(event) {
    const box = root.getBoundingClientRect();
    const anchor = event && event.clientX !== undefined
      ? { x: event.clientX, y: event.clientY }
      : (() => {
        const r = event && event.target ? event.target.getBoundingClientRect() : box;
        return { x: r.right, y: r.bottom };
      })();
    let left = anchor.x - box.left + 14;
    // Near the right edge: left of the pointer, so the mark stays visible.
    if (left + el.offsetWidth > box.width) left = Math.max(0, anchor.x - box.left - el.offsetWidth - 14);
    let top = anchor.y - box.top + 14;
    if (top + el.offsetHeight > box.height) {
      const above = anchor.y - box.top - el.offsetHeight - 8;
      top = above >= 0 ? above : Math.max(0, box.height - el.offsetHeight - 2);
    }
    el.style.left = `${left}px`;
    el.style.top = `${top}px`;
  }

  return {
    el,
    show({ title = "", sub = "", rows = [], notes = [] } = {}, event) {
      el.replaceChildren(html("div", { class: "cnc-tip-title", text: title }));
      if (sub) el.append(html("div", { class: "cnc-tip-sub", text: sub }));
      if (rows.length) {
        el.append(html("table", {}, rows.map(([k, v, hover]) => html("tr", {}, [
          html("td", { text: k }), html("td", { text: v, title: hover || undefined })]))));
      }
      for (const note of notes) el.append(html("div", { class: "cnc-tip-sub", text: note }));
      el.style.display = "block";
      place(event);
    },
    hide() { el.style.display = "none"; },
  };
}
