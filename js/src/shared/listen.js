// Subscriptions that end with the view: every handler, custom-message handler, timer and
// observer a view starts is released by the one function `listen` returns.
//
// API:
//   const dispose = listen(model, { "change:x change:y": redraw, "msg:custom": onMessage });
//     keys are one or more space-separated event names; returns a function removing them all
//   coalesce(fn) -> a function that runs fn once, in a microtask, however often it is called
//     in one turn (Python sets several traits at once: one draw after all their events)
//   const bag = disposer();  bag.add(fn) keeps a cleanup; bag.timeout(fn, ms),
//     bag.interval(fn, ms) start timers it will clear; bag() runs every cleanup once

export function listen(model, handlers) {
  const bound = [];
  for (const [keys, handler] of Object.entries(handlers)) {
    for (const name of keys.split(/\s+/).filter(Boolean)) {
      model.on(name, handler);
      bound.push([name, handler]);
    }
  }
  return () => {
    for (const [name, handler] of bound.splice(0)) model.off(name, handler);
  };
}

export function coalesce(fn) {
  let scheduled = false;
  let alive = true;
  const run = () => {
    if (scheduled || !alive) return;
    scheduled = true;
    Promise.resolve().then(() => {
      scheduled = false;
      if (alive) fn();
    });
  };
  run.cancel = () => { alive = false; };
  return run;
}

export function disposer() {
  const cleanups = [];
  const bag = () => {
    for (const fn of cleanups.splice(0).reverse()) fn();
  };
  bag.add = (fn) => { cleanups.push(fn); return fn; };
  bag.timeout = (fn, ms) => {
    const id = setTimeout(fn, ms);
    cleanups.push(() => clearTimeout(id));
    return id;
  };
  bag.interval = (fn, ms) => {
    const id = setInterval(fn, ms);
    cleanups.push(() => clearInterval(id));
    return id;
  };
  return bag;
}
