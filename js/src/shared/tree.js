// Left-to-right layout of a provenance forest: one column per depth, leaves
// in depth-first order, each parent centred on its children.

export function buildForest(nodes) {
  const byName = new Map(nodes.map((n) => [n.name, n]));
  const children = new Map(nodes.map((n) => [n.name, []]));
  const roots = [];
  for (const n of nodes) {
    if (n.parent !== null && n.parent !== undefined && byName.has(n.parent)) {
      children.get(n.parent).push(n.name);
    } else {
      roots.push(n.name);
    }
  }
  return { byName, children, roots };
}

export function countDescendants(forest, name) {
  let total = 0;
  const stack = [...forest.children.get(name)];
  while (stack.length) {
    const next = stack.pop();
    total += 1;
    stack.push(...forest.children.get(next));
  }
  return total;
}

export function layout(forest, collapsed) {
  const positions = new Map();
  let row = 0;
  let maxDepth = 0;
  // Iterative post-order walk: a 200-deep chain must not overflow the stack.
  for (const root of forest.roots) {
    const stack = [{ name: root, depth: 0, visited: false }];
    while (stack.length) {
      const item = stack[stack.length - 1];
      const kids = collapsed.has(item.name) ? [] : forest.children.get(item.name);
      if (!item.visited) {
        item.visited = true;
        maxDepth = Math.max(maxDepth, item.depth);
        for (let i = kids.length - 1; i >= 0; i -= 1) {
          stack.push({ name: kids[i], depth: item.depth + 1, visited: false });
        }
        continue;
      }
      stack.pop();
      if (!kids.length) {
        positions.set(item.name, { depth: item.depth, row: row });
        row += 1;
      } else {
        const first = positions.get(kids[0]).row;
        const last = positions.get(kids[kids.length - 1]).row;
        positions.set(item.name, { depth: item.depth, row: (first + last) / 2 });
      }
    }
    row += 0.5; // a little air between trees
  }
  return { positions, rows: Math.max(0, row - 0.5), depth: maxDepth };
}
