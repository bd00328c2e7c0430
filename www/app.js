// The demo page: calls functions through linkcache-web, compiling on a miss, and shows
// what the cache did: hit or miss, what was compiled, what was loaded, the graph.
// Statistics it reads from `stats()`: hits, misses (by cause), modulesLoaded,
// modulesCompiled, modulesAdded, bytesRead, timeMs.
import init, { LinkCache } from "/node_modules/linkcache-web/linkcache_web.js";
import initWat, { watToWasm } from "/node_modules/linkcache-web/wat/linkcache_web_wat.js";
import cytoscape from "/node_modules/cytoscape/dist/cytoscape.esm.min.mjs";
import { library, sourceOf, callable, raceFunctions, raceExpected } from "./samples.js";
import { drawCallChart } from "./call-chart.js";
import { layoutModules } from "./graph-layout.js";
import { formatBytes, formatCount, formatMs, plural } from "./format.js";

const DB = "linkcache-demo";
const $ = (id) => document.getElementById(id);
let cache;
let graph;
let lastLoaded = [];
const calls = new Map(); // func -> {cold: {ms, how}, warm: {ms, how} | null}
let lastCall = null; // {func, kind}

function showError(error) {
  const box = $("error");
  box.textContent = `${error?.name ?? "Error"}: ${error?.message ?? error}`;
  box.hidden = false;
  console.error(error);
}

function clearError() {
  $("error").hidden = true;
}

// Runs an action, showing any error instead of swallowing it.
function guarded(action) {
  return async (...args) => {
    clearError();
    try {
      await action(...args);
    } catch (e) {
      showError(e);
    }
  };
}

// The compiler: compiles whatever a miss says is missing.
async function compile(miss) {
  const wanted = miss.missCause === "missingDependency" ? miss.detail : miss.function;
  const source = sourceOf(wanted);
  if (!source) throw new Error(`the demo compiler does not know \`${wanted}\``);
  return [watToWasm(source)];
}

async function call(func) {
  const before = statsOf(cache);
  const started = performance.now();
  let report = await cache.tryTarget(func);
  let compiledByCompiler = 0;
  let loaded = report.hit ? report.loaded : [];
  if (!report.hit) {
    // A miss: compile what it names, add it, try again (what getOrCompile does), so
    // that the page can show each step.
    for (let round = 0; !report.hit && round < 5; round++) {
      if (!["unknown", "missingDependency", "broken"].includes(report.missCause)) break;
      for (const bytes of await compile(report)) {
        await cache.addModule(bytes);
        compiledByCompiler += 1;
      }
      report = await cache.tryTarget(func);
      if (report.hit) loaded = report.loaded;
    }
    if (!report.hit) throw Object.assign(new Error(report.message), { name: "LinkCacheMiss" });
  }
  const result = report.fn(...library[func].args);
  const elapsed = performance.now() - started;
  const after = statsOf(cache);
  const cached = (await cache.modules()).length;

  const how = compiledByCompiler > 0 ? "compiled" : loaded.length ? "loaded" : "bound";
  $("outcome").textContent = compiledByCompiler > 0 ? "miss → compiled" : "hit";
  $("outcome").className = compiledByCompiler > 0 ? "miss" : "hit";
  $("result").textContent = String(result);
  $("compiled-count").textContent = plural(compiledByCompiler, "module");
  $("loaded-count").textContent = loaded.length
    ? `${formatCount(after.modulesLoaded - before.modulesLoaded)} of ${formatCount(cached)} cached (${loaded.map((id) => id.slice(0, 8)).join(", ")})`
    : "none (already loaded in this tab)";
  $("browser-compiled").textContent = plural(after.modulesCompiled - before.modulesCompiled, "module");
  $("bytes-read").textContent = formatBytes(after.bytesRead - before.bytesRead);
  $("call-time").textContent = formatMs(elapsed);
  $("target-time").textContent = formatMs(after.timeMs - before.timeMs);
  lastLoaded = loaded;

  const entry = { ms: elapsed, how };
  const row = calls.get(func);
  if (!row) calls.set(func, { cold: entry, warm: null });
  else row.warm = entry;
  lastCall = { func, kind: row ? "warm" : "cold" };
  renderCallChart();
  await refresh();
}

// This tab's statistics with the fields the page reads, missing ones as zero.
function statsOf(linkcache) {
  const s = linkcache.stats() ?? {};
  const number = (v) => (typeof v === "number" ? v : 0);
  const misses = typeof s.misses === "number" ? { any: s.misses } : (s.misses ?? {});
  return {
    raw: s,
    hits: number(s.hits),
    misses,
    missTotal: Object.values(misses).reduce((a, b) => a + number(b), 0),
    modulesLoaded: number(s.modulesLoaded),
    modulesCompiled: number(s.modulesCompiled),
    modulesAdded: number(s.modulesAdded),
    bytesRead: number(s.bytesRead),
    timeMs: number(s.timeMs),
  };
}

function renderCallChart() {
  const rows = [];
  for (const [func, { cold, warm }] of calls) {
    for (const [kind, entry] of [["cold", cold], ["warm", warm]]) {
      if (!entry) continue;
      const last = lastCall?.func === func && lastCall.kind === kind;
      rows.push({ func, kind, ms: entry.ms, how: entry.how, last });
    }
  }
  drawCallChart($("call-chart"), rows);
}

function renderSummary(stats, cached) {
  const causes = Object.entries(stats.misses).filter(([, n]) => n > 0);
  $("sum-hits").textContent = formatCount(stats.hits);
  $("sum-misses").textContent = stats.missTotal
    ? `${formatCount(stats.missTotal)} (${causes.map(([cause, n]) => `${cause.replaceAll("_", " ")}: ${formatCount(n)}`).join(", ")})`
    : "0";
  $("sum-loaded").textContent = `${formatCount(stats.modulesLoaded)} of ${formatCount(cached)} cached`;
  $("sum-compiled").textContent = formatCount(stats.modulesCompiled);
  $("sum-added").textContent = formatCount(stats.modulesAdded);
  $("sum-bytes").textContent = formatBytes(stats.bytesRead);
  $("sum-time").textContent = formatMs(stats.timeMs);
  $("stats").textContent = JSON.stringify(stats.raw, null, 2);
}

async function refresh() {
  const modules = await cache.modules();
  $("module-count").textContent = String(modules.length);
  renderSummary(statsOf(cache), modules.length);
  drawGraph(modules);
}

function drawGraph(modules) {
  const definers = new Map();
  for (const m of modules) for (const f of m.functions) definers.set(f.name, (definers.get(f.name) ?? 0) + 1);
  const bound = cache.bindings();
  const drawn = modules.filter((m) => !m.functions.every((f) => f.name.startsWith("gen."))); // fillers: counted, not drawn
  const elements = [];
  for (const m of drawn) {
    elements.push({ data: { id: m.id, label: m.id.slice(0, 8) }, classes: lastLoaded.includes(m.id) ? "loaded" : "" });
    for (const f of m.functions) {
      const id = `${m.id}/${f.name}`;
      const classes = [definers.get(f.name) > 1 ? "duplicate" : "", bound[f.name] === m.id ? "bound" : ""].join(" ");
      elements.push({ data: { id, parent: m.id, label: f.name }, classes });
    }
  }
  // Edges from each function to the module bound (or first defining) its callees.
  const firstDefiner = new Map();
  for (const m of modules) for (const f of m.functions) if (!firstDefiner.has(f.name)) firstDefiner.set(f.name, m.id);
  const drawnFunctions = new Set(elements.map((e) => e.data.id));
  const moduleEdges = [];
  for (const m of drawn) {
    for (const f of m.functions) {
      for (const callee of f.calls) {
        const target = bound[callee] ?? firstDefiner.get(callee);
        if (target && drawnFunctions.has(`${target}/${callee}`)) {
          elements.push({ data: { id: `${m.id}/${f.name}->${callee}`, source: `${m.id}/${f.name}`, target: `${target}/${callee}` } });
          moduleEdges.push([m.id, target]);
        }
      }
    }
  }
  if (!graph) {
    graph = cytoscape({
      container: $("graph"),
      style: [
        { selector: "node", style: { label: "data(label)", "font-size": 11, "text-valign": "center", "background-color": "#cfe0f3", shape: "round-rectangle", width: "label", height: 22, padding: 6 } },
        { selector: ":parent", style: { "text-valign": "top", "font-size": 9, color: "#5a6672", "background-color": "#f4f7fa", "border-color": "#8a99a8", "border-width": 1 } },
        { selector: ".loaded", style: { "background-color": "#fff3c4", "border-color": "#c99a00", "border-width": 2 } },
        { selector: ".duplicate", style: { "border-style": "dashed", "border-width": 2, "border-color": "#9a5b00" } },
        { selector: ".bound", style: { "background-color": "#bfe5c9" } },
        { selector: "edge", style: { width: 1.5, "curve-style": "bezier", "target-arrow-shape": "triangle", "line-color": "#7a8794", "target-arrow-color": "#7a8794" } },
      ],
    });
    window.linkcacheDemo.graph = graph;
  }
  // Functions go where layoutModules puts them; module boxes follow their functions.
  // (Cytoscape 3.34 drew no edges when the nodes were only given positions, with or
  // without a preset layout; a layout run first, then the positions, draws them.)
  const positions = layoutModules(drawn, moduleEdges);
  graph.elements().remove();
  graph.add(elements);
  graph.layout({ name: "grid" }).run();
  graph.nodes().not(":parent").positions((node) => ({ ...positions.get(node.id()) }));
  graph.fit(undefined, 16);
  if (graph.zoom() > 1.4) {
    // A small graph: keep the text at a readable size instead of filling the canvas.
    graph.zoom(1.4);
    graph.center();
  }
}

async function race() {
  const db = `${DB}-race-${Date.now()}`;
  const startAt = Date.now() + 400;
  const run = (worker) =>
    new Promise((resolve, reject) => {
      const w = new Worker("race-worker.js", { type: "module" });
      w.onmessage = (e) => (e.data.error ? reject(new Error(e.data.error)) : resolve(e.data));
      w.onerror = (e) => reject(new Error(e.message));
      w.postMessage({ db, worker, startAt });
    });
  $("race-result").textContent = "racing…";
  const results = await Promise.all([run("A"), run("B")]);
  const raceCache = await LinkCache.open(db, {});
  const modules = await raceCache.modules();
  raceCache.close();
  const defining = modules.filter((m) => m.functions.some((f) => f.name === "race.f"));
  // Both workers must be bound to the same modules and must both have run their code:
  // each function's result carries the tag of the worker whose bytes ran.
  const owner = (func) => results.find((r) => r.own[func] === results[0].bindings[func])?.worker;
  const [sqOwner, fOwner] = raceFunctions.map(owner);
  const expected = sqOwner && fOwner ? raceExpected(sqOwner, fOwner) : NaN;
  const agree = results.every((r) =>
    raceFunctions.every((func) => r.bindings[func] === results[0].bindings[func]) && r.result === expected);
  // For the console and the end-to-end tests: what each worker reported.
  window.linkcacheDemo.race = { results, duplicates: defining.length };
  $("race-result").innerHTML = `
    <p>${results.map((r) => `worker ${r.worker}: compiled ${r.compiled}×, race.f(6) = ${r.result}, race.f bound to <code>${r.bindings["race.f"].slice(0, 12)}</code>, race.sq to <code>${r.bindings["race.sq"].slice(0, 12)}</code>`).join("<br>")}</p>
    <p id="race-summary">${defining.length} modules define <code>race.f</code> (duplicates);
    ${agree ? `both workers are bound to the same ones (race.f: worker ${fOwner}'s, race.sq: worker ${sqOwner}'s, the earliest committed), and both ran their code` : "the workers disagree, or one ran code it is not bound to"}.</p>`;
  $("race-result").dataset.duplicates = String(defining.length);
  $("race-result").dataset.agree = String(agree);
}

async function main() {
  await Promise.all([init(), initWat()]);
  cache = await LinkCache.open(DB, {});
  // For the console (and the end-to-end tests): the cache this page uses.
  window.linkcacheDemo = { cache, graph: null };
  cache.onChange(guarded(() => refresh()));
  for (const func of callable) {
    const button = document.createElement("button");
    button.id = `call-${func}`;
    button.textContent = `${func}(${library[func].args.join(", ")})`;
    button.onclick = guarded(() => call(func));
    $("call-buttons").append(button);
  }
  for (const name of Object.keys(library)) $("editor-source").append(new Option(name, name));
  $("editor-source").onchange = () => ($("editor").value = library[$("editor-source").value].wat);
  $("editor").value = library["util.add"].wat;
  $("add-module").onclick = guarded(async () => {
    $("add-result").textContent = "";
    const id = await cache.addModule(watToWasm($("editor").value));
    $("add-result").textContent = `added module ${id.slice(0, 12)}`;
    await refresh();
  });
  $("race-button").onclick = guarded(race);
  $("fill").onclick = guarded(async () => {
    const start = (await cache.modules()).length;
    for (let i = start; i < start + 50; i++) await cache.addModule(watToWasm(sourceOf(`gen.f${i}`)));
    await refresh();
  });
  $("clear").onclick = guarded(async () => {
    await cache.clear();
    calls.clear();
    lastCall = null;
    lastLoaded = [];
    renderCallChart();
    await refresh();
  });
  renderCallChart();
  await refresh();
  document.body.dataset.ready = "true";
}

main().catch(showError);
