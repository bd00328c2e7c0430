// Where the graph view puts each function: modules are laid out as whole boxes, never
// spread across the canvas. Modules that call each other (one call's closure, and the
// calls sharing its modules) form a group; inside a group, callers stand left of their
// callees, one column per step; a module's functions are stacked in one column inside
// its box. Groups are packed in rows, in the order their first module was committed.

const functionPitch = 34; // vertical distance between two functions of a module
const headerHeight = 22; // the module's label above its functions
const moduleGap = 26; // between two modules of a column
const columnGap = 56; // between two columns of a group
const groupGap = 48; // between two groups
const rowWidth = 900; // groups wrap to a new row past this width

/**
 * `modules`: `[{id, functions: [{name}]}]` in commit order; `edges`: `[[callerModule,
 * calleeModule]]`. Returns a Map from a function node's id (`moduleId/funcName`) to
 * its position `{x, y}`.
 */
export function layoutModules(modules, edges) {
  const ids = modules.map((m) => m.id);
  const known = new Set(ids);
  const out = new Map(ids.map((id) => [id, new Set()]));
  const into = new Map(ids.map((id) => [id, new Set()]));
  for (const [from, to] of edges) {
    if (from === to || !known.has(from) || !known.has(to)) continue;
    out.get(from).add(to);
    into.get(to).add(from);
  }

  const positions = new Map();
  let rowX = 0;
  let rowY = 0;
  let rowHeight = 0;
  for (const group of groups(ids, out, into)) {
    const columns = columnsOf(group, out, into);
    const columnWidths = columns.map((column) => Math.max(...column.map((id) => boxWidth(moduleById(modules, id)))));
    const groupWidth = columnWidths.reduce((a, b) => a + b, 0) + columnGap * (columns.length - 1);
    const groupHeight = Math.max(...columns.map((column) => column.reduce((h, id) => h + boxHeight(moduleById(modules, id)) + moduleGap, -moduleGap)));
    if (rowX > 0 && rowX + groupWidth > rowWidth) {
      rowX = 0;
      rowY += rowHeight + groupGap;
      rowHeight = 0;
    }
    let x = rowX;
    columns.forEach((column, c) => {
      let y = rowY;
      const centre = x + columnWidths[c] / 2;
      for (const id of column) {
        const module = moduleById(modules, id);
        module.functions.forEach((f, i) => {
          positions.set(`${id}/${f.name}`, { x: centre, y: y + headerHeight + i * functionPitch });
        });
        y += boxHeight(module) + moduleGap;
      }
      x += columnWidths[c] + columnGap;
    });
    rowX += groupWidth + groupGap;
    rowHeight = Math.max(rowHeight, groupHeight);
  }
  return positions;
}

// Weakly connected groups of modules, each in commit order, ordered by their first module.
function groups(ids, out, into) {
  const seen = new Set();
  const result = [];
  for (const start of ids) {
    if (seen.has(start)) continue;
    const members = new Set([start]);
    const queue = [start];
    seen.add(start);
    while (queue.length) {
      const id = queue.shift();
      for (const next of [...out.get(id), ...into.get(id)]) {
        if (!seen.has(next)) {
          seen.add(next);
          members.add(next);
          queue.push(next);
        }
      }
    }
    result.push(ids.filter((id) => members.has(id)));
  }
  return result;
}

// Columns of a group: callers first, every module right of all its callers (longest
// path from the group's roots); modules on a cycle stand right of their callers outside it.
function columnsOf(group, out, into) {
  const members = new Set(group);
  const column = new Map(group.map((id) => [id, 0]));
  const waiting = new Map(group.map((id) => [id, [...into.get(id)].filter((c) => members.has(c)).length]));
  const queue = group.filter((id) => waiting.get(id) === 0);
  const placed = new Set();
  const place = (id) => {
    placed.add(id);
    for (const next of out.get(id)) {
      if (placed.has(next)) continue;
      column.set(next, Math.max(column.get(next), column.get(id) + 1));
      waiting.set(next, waiting.get(next) - 1);
      if (waiting.get(next) === 0) queue.push(next);
    }
  };
  for (;;) {
    while (queue.length) place(queue.shift());
    // What is left sits on a cycle: place its earliest committed module as if free.
    const rest = group.find((id) => !placed.has(id));
    if (rest === undefined) break;
    place(rest);
  }
  const columns = [];
  for (const id of group) (columns[column.get(id)] ??= []).push(id);
  return columns.filter(Boolean);
}

function moduleById(modules, id) {
  return modules.find((m) => m.id === id);
}

function boxWidth(module) {
  const longest = Math.max(8, ...module.functions.map((f) => f.name.length));
  return longest * 7 + 24;
}

function boxHeight(module) {
  return headerHeight + module.functions.length * functionPitch;
}
