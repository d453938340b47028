// Selection shared by every view: the widget's `selected` trait mirrors the registry's.

export function getSelected(model) {
  return new Set(model.get("selected") || []);
}

export function select(model, name, additive) {
  const current = getSelected(model);
  let next;
  if (additive) {
    if (current.has(name)) current.delete(name);
    else current.add(name);
    next = [...current];
  } else {
    next = current.size === 1 && current.has(name) ? [] : [name];
  }
  model.set("selected", next);
  model.save_changes();
}

export function markSelected(root, selected) {
  for (const mark of root.querySelectorAll("[data-model]")) {
    const on = selected.has(mark.getAttribute("data-model"));
    mark.setAttribute("aria-selected", on ? "true" : "false");
    mark.classList.toggle("cnc-selected", on);
  }
}
