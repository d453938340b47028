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

// Compress and Compare's second layout: one column per operation (every quantized model in
// one column), columns ordered by how deep their models first appear; within a column,
// models keep the depth layout's top-to-bottom order.
export function layoutByOperation(forest, collapsed) {
  const byDepth = layout(forest, collapsed);
  const columnOf = (name) => {
    const n = forest.byName.get(name);
    return n.operation || (n.parent ? "(unknown)" : "root");
  };
  const first = new Map();
  for (const [name, p] of byDepth.positions) {
    const col = columnOf(name);
    const seen = first.get(col);
    if (seen === undefined || p.depth < seen) first.set(col, p.depth);
  }
  const columns = [...first.keys()].sort((a, b) => first.get(a) - first.get(b) || a.localeCompare(b));
  const index = new Map(columns.map((c, i) => [c, i]));
  const members = columns.map(() => []);
  for (const [name, p] of byDepth.positions) members[index.get(columnOf(name))].push([name, p.row]);
  const positions = new Map();
  let rows = 0;
  members.forEach((list, col) => {
    list.sort((a, b) => a[1] - b[1]);
    list.forEach(([name], row) => positions.set(name, { depth: col, row }));
    rows = Math.max(rows, list.length);
  });
  return { positions, rows, depth: Math.max(0, columns.length - 1), columns };
}
