// Renders the widgets of an exported report with no kernel and no network.
//
// The report inlines require.js, the AMD bundle of @jupyter-widgets/html-manager and
// anywidget's AMD bundle (named "anywidget"); this script is the last of them. It does what
// html-manager's embed-amd-render does, with three differences: modules come only from what
// the page defines (no CDN fallback), views that share a registry keep their selections
// linked (in a notebook the kernel links them), and the page says when it is done.

const STATE = 'script[type="application/vnd.jupyter.widget-state+json"]';
const VIEW = 'script[type="application/vnd.jupyter.widget-view+json"]';

function requirePromise(names) {
  return new Promise((resolve, reject) => window.requirejs(names, resolve, reject));
}

function loader(name, version) {
  return requirePromise([name]).catch(() => {
    throw new Error(
      `the widget module ${name}@${version} is not inlined in this report; ` +
        "only ipywidgets and anywidget-based widgets (such as cnc_widgets views) render offline",
    );
  });
}

// The registry's traits that views mirror: in a live kernel the registry links them.
const LINKED = ["selected", "filters"];

// Every view of one registry carries the same _registry_key: a selection (or filter) made
// in one of them is set on the others, as the registry does in a live kernel. Setting an
// equal value fires no change, so the echo stops there.
function linkSelections(models) {
  const groups = new Map();
  for (const model of models) {
    const key = model.get("_registry_key");
    if (!key) continue;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(model);
  }
  for (const group of groups.values()) {
    for (const name of LINKED) {
      const members = group.filter((m) => m.get(name) !== undefined);
      for (const model of members) {
        model.on(`change:${name}`, () => {
          const value = model.get(name);
          for (const other of members) {
            if (other !== model) other.set(name, value);
          }
        });
      }
    }
  }
  return groups;
}

async function renderState(stateTag, manager) {
  const state = JSON.parse(stateTag.textContent);
  const models = await manager.set_state(state);
  linkSelections(models);
  const byId = new Map(models.map((m) => [m.model_id, m]));
  await Promise.all(
    Array.from(document.querySelectorAll(VIEW)).map(async (tag) => {
      const model = byId.get(JSON.parse(tag.textContent).model_id);
      if (!model || !tag.parentElement) return;
      const host = document.createElement("div");
      host.className = "widget-subarea";
      tag.parentElement.insertBefore(host, tag);
      const view = await manager.create_view(model);
      manager.display_view(view, host);
      // The static summary stood in for the view until now.
      const fallback = tag.parentElement.querySelector(":scope > .cnc-report-summary");
      if (fallback) fallback.remove();
    }),
  );
  return models;
}

function showError(error) {
  const box = document.createElement("pre");
  box.className = "cnc-report-error";
  box.textContent = `The widgets of this report could not be rendered: ${error}`;
  document.body.prepend(box);
}

async function main() {
  window.__cncReport = { kernel: false };
  const root = document.documentElement;
  try {
    const htmlManager = await requirePromise(["@jupyter-widgets/html-manager"]);
    const tags = Array.from(document.querySelectorAll(STATE));
    const managers = tags.map(() => new htmlManager.HTMLManager({ loader }));
    window.__cncReport.managers = managers;
    await Promise.all(tags.map((tag, i) => renderState(tag, managers[i])));
    root.setAttribute("data-cnc-report", "rendered");
  } catch (error) {
    console.error(error);
    showError(error && error.message ? error.message : error);
    root.setAttribute("data-cnc-report", "failed");
  }
}

if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", main);
} else {
  main();
}
