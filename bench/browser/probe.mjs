// Where a warm `target()` spends its time in a fresh browser, beside its floor, measured
// side by side in one run (each measurement a fresh browser process on one profile):
//
//   node probe.mjs PROBE.json
//
// PROBE: { pkgDir, profileDir, runs, database, warmup, rows: [{ name, target, arg,
//   expected, closure: [paths, instantiation order], globals: {name: value}, stubs }],
//   levels: [[func_name...] per level], modes: ["linkcache", "floor", "levels", "memory"] }
//
// - linkcache: `LinkCache.open` + `target()` + a call; the package's own marks when it
//   was built with them (globalThis.__lcMarks).
// - floor: what no IndexedDB-backed cache can avoid: `indexedDB.open`, one read-only
//   transaction with one `by_function` lookup of the target and the closure's bytes by
//   key (ids known in advance), every `WebAssembly.compile` started at once, instances
//   made in order, a call.
// - floor-kept: the floor of linkcache-web's design for this target (a kept plan
//   replayed): `indexedDB.open`, the BroadcastChannel it listens on, a first round trip
//   for the target's candidates, its plans record and the index stamp, a second for
//   the bytes the record names, then compiles and instances as the floor's. Nothing is
//   decoded or checked.
// - levels: the same, but the closure discovered level by level (one `by_function`
//   round trip per module of the chain), as a cache without a hint must.
// - memory: the benchmark's memory side (bytes fetched before the clock starts): each
//   module compiled, then instantiated, one after the other.
// - memory-concurrent: the same with every compile started at once (as linkcache and
//   the floor compile).
// - warmcode: as linkcache, but the warm-up also targets the row's function in a copy
//   of the database (so the package's code for this path is compiled and run once,
//   while nothing of the measured database is): what cold package code costs.
// - otherwarm: as linkcache, but the warm-up targets `warmup` in that copy (the
//   measured database has no write of the warm-up in flight).
// - twice: the target a second time in the same tab after `forget()` (warm package
//   code): what the fresh tab's first run pays for running cold code.
// - repeat, floor-repeat: linkcache's target (after `forget()`) and the floor, each
//   `row.repeats` (40) times in one tab: the quartiles of a warm target, far steadier
//   than one fresh tab's (read the package's own work per target from them).
// - opens, opens-reversed: `LinkCache.open`, `indexedDB.open` with and without a
//   version, one after the other (each closed again), in two orders.
//
// With TRACE=PREFIX every measured session writes a Chrome trace to
// PREFIX-<row>-<mode>-<run>.json (the marks become `performance.mark`s in it);
// `node trace-summary.mjs 'PREFIX-*.json'` counts what each target did on the page's main
// thread. Tracing slows the page: read timings from a run without it.
//
// With PROFILE=1 the linkcache, warmcode, otherwarm, twice, repeat and floor-repeat
// modes are also CPU-profiled (DevTools' sampling profiler, 50 µs) and the functions'
// self time, summed over the runs, is printed per row; such a run's timings include the
// profiler's start, so read them from a run without it. Build the package with
// `cargo xtask web-pkg --release --marks` to keep its function names.
import { readFile } from "node:fs/promises";
import { launchOptions, serve, sessions } from "./harness.mjs";

const spec = JSON.parse(await readFile(process.argv[2], "utf8"));
const files = [...new Set([spec.warmup, ...spec.rows.flatMap((row) => row.closure)])];
const server = await serve({ pkgDir: spec.pkgDir, files, title: "probe" });
// Extra Chromium flags for experiments only (the benchmark runs default flags).
const extraArgs = process.env.CHROMIUM_ARGS ? process.env.CHROMIUM_ARGS.split(" ") : [];
const runSession = sessions({ profileDir: spec.profileDir, url: server.url, options: launchOptions(extraArgs) });
const profiling = !!process.env.PROFILE;
const tracePrefix = process.env.TRACE;
const session = (body, arg, trace = null) => runSession(body, arg, { echoConsole: true, profile: profiling && ["linkcache", "warmcode", "otherwarm", "twice", "repeat", "floor-repeat"].includes(arg.mode), trace });
const rows = spec.rows.map((row) => ({ ...row, closureIndex: row.closure.map((f) => files.indexOf(f)) }));

async function setup({ rows, database, copy }) {
  const { default: init, LinkCache } = await import("/pkg/linkcache_web.js");
  await init({ module_or_path: "/pkg/linkcache_web_bg.wasm" });
  const stub = () => new Proxy({}, { get: () => () => 0 });
  // The database, and a copy for the warm-up of the warmcode and otherwarm modes.
  for (const db of copy ? [database, `${database}-copy`] : [database]) {
    const cache = await LinkCache.open(db, {});
    await cache.clear();
    await cache.addModule(new Uint8Array(await (await fetch("/wasm/0")).arrayBuffer()));
    for (const row of rows) {
      for (const index of row.closureIndex) {
        await cache.addModule(new Uint8Array(await (await fetch(`/wasm/${index}`)).arrayBuffer()));
      }
    }
    cache.close();
    for (const row of rows) {
      const warm = await LinkCache.open(db, { imports: Object.fromEntries(row.stubs.map((ns) => [ns, stub()])) });
      await warm.target(row.target);
      warm.close();
    }
  }
  return true;
}

// Every mode runs in one page function so that the code is one string for playwright.
async function measure({ mode, row, database, traced }) {
  const stub = () => new Proxy({}, { get: () => () => 0 });
  const { default: init, LinkCache, moduleId } = await import("/pkg/linkcache_web.js");
  await init({ module_or_path: "/pkg/linkcache_web_bg.wasm" });
  const check = (result) => {
    if (row.expected !== null && result !== row.expected) throw new Error(`${row.target} returned ${result}, expected ${row.expected}`);
  };
  const call = (f) => (row.arg === null ? null : String(f(row.arg)));
  const bytesOf = async () => {
    const all = [];
    for (const index of row.closureIndex) all.push(new Uint8Array(await (await fetch(`/wasm/${index}`)).arrayBuffer()));
    return all;
  };
  const link = () => {
    const fns = {};
    const globals = {};
    for (const [name, value] of Object.entries(row.globals)) {
      globals[name] = new WebAssembly.Global({ value: "i64", mutable: false }, BigInt(value));
    }
    const imports = Object.fromEntries(row.stubs.map((ns) => [ns, stub()]));
    imports["linkcache:fn"] = fns;
    imports["linkcache:global"] = globals;
    return { fns, imports };
  };
  const req = (r) => new Promise((resolve, reject) => { r.onsuccess = () => resolve(r.result); r.onerror = () => reject(r.error); });
  const marks = [];
  // Traced, the marks are `performance.mark`s too (the trace's user timing).
  const mark = (label) => {
    marks.push([label, performance.now()]);
    if (traced) performance.mark(label);
  };
  // The same warm-up for every mode: the first IndexedDB access and the first wasm
  // compile of a fresh browser.
  const w = performance.now();
  const warm = await LinkCache.open(mode === "otherwarm" ? `${database}-copy` : database, {});
  if ((await warm.target("bench.warmup"))() !== 1) throw new Error("bench.warmup");
  warm.close();
  if (mode === "warmcode") {
    const copy = await LinkCache.open(`${database}-copy`, { imports: Object.fromEntries(row.stubs.map((ns) => [ns, stub()])) });
    check(call(await copy.target(row.target)));
    copy.close();
  }
  const warmupMs = performance.now() - w;
  if (mode === "linkcache" || mode === "warmcode" || mode === "otherwarm") {
    globalThis.__lcMarks = { push: ([label]) => mark(label) };
    const imports = Object.fromEntries(row.stubs.map((ns) => [ns, stub()]));
    console.profile?.("linkcache");
    const t = performance.now();
    mark("start");
    const cache = await LinkCache.open(database, { imports });
    mark("opened");
    const f = await cache.target(row.target);
    mark("targeted");
    const result = call(f);
    mark("called");
    const totalMs = performance.now() - t;
    console.profileEnd?.("linkcache");
    check(result);
    const stats = cache.stats();
    cache.close();
    return { warmupMs, totalMs, marks: marks.map(([l, m]) => [l, m - t]), planTransactions: stats.planTransactions, planReads: stats.planReads };
  }
  if (mode === "opens" || mode === "opens-reversed") {
    // Opening the same database three ways, one after the other (order alternates).
    const times = {};
    const ways = {
      linkcache: async () => (await LinkCache.open(database, {})).close(),
      versioned: async () => (await req(indexedDB.open(database, 4))).close(),
      plain: async () => (await req(indexedDB.open(database))).close(),
    };
    const order = mode === "opens" ? ["linkcache", "versioned", "plain"] : ["plain", "versioned", "linkcache"];
    for (const way of order) {
      const t = performance.now();
      await ways[way]();
      times[way] = performance.now() - t;
    }
    return { warmupMs, totalMs: times.linkcache, marks: Object.entries(times) };
  }
  if (mode === "twice") {
    // The same target twice in one tab: the second one runs on warm (tiered-up) package
    // code and this tab's decoded manifests, but reads and compiles again.
    const imports = Object.fromEntries(row.stubs.map((ns) => [ns, stub()]));
    const first = performance.now();
    const cache = await LinkCache.open(database, { imports });
    await cache.target(row.target);
    const firstMs = performance.now() - first;
    cache.forget();
    globalThis.__lcMarks = { push: ([label]) => mark(label) };
    console.profile?.("linkcache");
    const t = performance.now();
    mark("start");
    const f = await cache.target(row.target);
    mark("targeted");
    const result = call(f);
    const totalMs = performance.now() - t;
    console.profileEnd?.("linkcache");
    check(result);
    cache.close();
    return { warmupMs, totalMs, firstMs, marks: marks.map(([l, m]) => [l, m - t]) };
  }
  if (mode === "repeat" || mode === "floor-repeat") {
    // The target again and again in one tab (linkcache: `forget()` before each; floor:
    // the floor's transaction, compiles and instances on the open database): the
    // median of `repeats` warm targets, once the fresh browser's own start-up work has
    // settled. Each still reads and compiles; V8 may reuse a module compiled from the
    // same bytes, on both sides alike. What it measures is the package's own work per
    // target, with far less spread than a fresh tab's single target.
    const repeats = row.repeats ?? 40;
    const imports = Object.fromEntries(row.stubs.map((ns) => [ns, stub()]));
    const ids = (await bytesOf()).map((b) => moduleId(b));
    const cache = await LinkCache.open(database, { imports });
    const db = await req(indexedDB.open(database));
    const once = mode === "repeat"
      ? async () => {
          cache.forget();
          return call(await cache.target(row.target));
        }
      : async () => {
          const tx = db.transaction(["modules", "manifests"], "readonly");
          const lookup = req(tx.objectStore("manifests").index("by_function").getAll(IDBKeyRange.only(row.target)));
          const got = ids.map((id) => req(tx.objectStore("modules").get(id)));
          await lookup;
          const compiled = (await Promise.all(got)).map((bytes) => WebAssembly.compile(bytes));
          const { fns, imports } = link();
          for (const module of compiled) {
            const instance = await WebAssembly.instantiate(await module, imports);
            for (const [name, value] of Object.entries(instance.exports)) if (typeof value === "function") fns[name] = value;
          }
          return call(fns[row.target]);
        };
    check(await once());
    const times = [];
    console.profile?.("linkcache");
    for (let i = 0; i < repeats; i++) {
      const t = performance.now();
      const result = await once();
      times.push(performance.now() - t);
      check(result);
    }
    console.profileEnd?.("linkcache");
    cache.close();
    db.close();
    times.sort((a, b) => a - b);
    const at = (q) => times[Math.min(times.length - 1, Math.floor(q * times.length))];
    return { warmupMs, totalMs: at(0.5), marks: [["min", times[0]], ["q1", at(0.25)], ["median", at(0.5)], ["q3", at(0.75)]] };
  }
  if (mode === "memory" || mode === "memory-concurrent") {
    const all = await bytesOf();
    const t = performance.now();
    mark("start");
    const { fns, imports } = link();
    // memory-concurrent: every compile started at once, as linkcache and the floor do.
    const started = mode === "memory-concurrent" ? all.map((bytes) => WebAssembly.compile(bytes)) : null;
    for (const [i, bytes] of all.entries()) {
      const module = await (started ? started[i] : WebAssembly.compile(bytes));
      const instance = await WebAssembly.instantiate(module, imports);
      for (const [name, value] of Object.entries(instance.exports)) if (typeof value === "function") fns[name] = value;
    }
    mark("loaded");
    const result = call(fns[row.target]);
    mark("called");
    const totalMs = performance.now() - t;
    check(result);
    return { warmupMs, totalMs, marks: marks.map(([l, m]) => [l, m - t]) };
  }
  // floor, floor-kept and levels: raw IndexedDB on the package's database.
  const ids = (await bytesOf()).map((b) => moduleId(b));
  const t = performance.now();
  mark("start");
  const db = await req(indexedDB.open(database));
  mark("opened");
  let channel = null;
  if (mode === "floor-kept") {
    // The channel linkcache-web opens to hear other tabs.
    channel = new BroadcastChannel(`linkcache:${database}`);
    mark("listening");
  }
  const tx = db.transaction(mode === "floor-kept" ? ["modules", "manifests", "plans"] : ["modules", "manifests"], "readonly");
  const index = tx.objectStore("manifests").index("by_function");
  if (mode === "floor") {
    const lookup = req(index.getAll(IDBKeyRange.only(row.target)));
    const got = ids.map((id) => req(tx.objectStore("modules").get(id)));
    await lookup;
    const all = await Promise.all(got);
    mark("read");
    var compiled = all.map((bytes) => WebAssembly.compile(bytes));
  } else if (mode === "floor-kept") {
    // The first step of a kept plan's replay (the target's candidates, its plans record,
    // the index stamp), then the bytes of the modules the record names.
    const plans = tx.objectStore("plans");
    const [, hint] = await Promise.all([
      req(index.getAll(IDBKeyRange.only(row.target))),
      req(plans.get(row.target)),
      req(plans.get(0)),
    ]);
    if (!hint?.kept) throw new Error(`no kept plan for ${row.target}`);
    mark("first step read");
    const all = await Promise.all(ids.map((id) => req(tx.objectStore("modules").get(id))));
    mark("read");
    var compiled = all.map((bytes) => WebAssembly.compile(bytes));
  } else {
    // One round trip per level (the spec's `levels`: the func_names a planner asks for
    // at each level of the closure), every request of a level issued before awaiting.
    for (const level of row.levels ?? [[row.target]]) {
      await Promise.all(level.map((f) => req(index.getAll(IDBKeyRange.only(f)))));
    }
    mark("planned");
    const all = await Promise.all(ids.map((id) => req(tx.objectStore("modules").get(id))));
    mark("read");
    var compiled = all.map((bytes) => WebAssembly.compile(bytes));
  }
  const { fns, imports } = link();
  for (const module of compiled) {
    const instance = await WebAssembly.instantiate(await module, imports);
    for (const [name, value] of Object.entries(instance.exports)) if (typeof value === "function") fns[name] = value;
  }
  mark("loaded");
  const result = call(fns[row.target]);
  mark("called");
  const totalMs = performance.now() - t;
  check(result);
  channel?.close();
  db.close();
  return { warmupMs, totalMs, marks: marks.map(([l, m]) => [l, m - t]) };
}

// Self time per function of one CPU profile, added to `times`.
const selfTimes = {};
function addSelfTimes(times, profile) {
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  profile.samples.forEach((id, i) => {
    const frame = nodes.get(id).callFrame;
    const fn = frame.functionName || `(${frame.url.split("/").pop() || "native"})`;
    times.set(fn, (times.get(fn) ?? 0) + profile.timeDeltas[i] / 1000);
  });
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s.length ? (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : NaN; };
try {
  const modes = spec.modes ?? ["linkcache", "floor", "levels", "memory"];
  const copy = modes.includes("warmcode") || modes.includes("otherwarm");
  if (!spec.skipSetup) await session(setup, { rows, database: spec.database, copy });
  const results = {};
  for (let run = 0; run < spec.runs; run++) {
    process.stderr.write(`    round ${run + 1}/${spec.runs}\n`);
    for (const row of rows) {
      const order = run % 2 ? [...modes].reverse() : modes;
      for (const mode of order) {
        const trace = tracePrefix ? `${tracePrefix}-${row.name.replace(/[^a-z0-9]+/gi, "_")}-${mode}-${run + 1}.json` : null;
        let r = await session(measure, { mode, row, database: spec.database, traced: !!trace }, trace);
        if (profiling && r.profiles) {
          for (const profile of r.profiles) addSelfTimes((selfTimes[row.name] ??= new Map()), profile);
          r = r.result;
        }
        ((results[row.name] ??= {})[mode] ??= []).push(r);
      }
    }
  }
  for (const [name, byMode] of Object.entries(results)) {
    console.log(`${name}`);
    for (const [mode, runs] of Object.entries(byMode)) {
      const labels = runs[0].marks.map(([l]) => l);
      const parts = labels.map((l, i) => `${l} ${median(runs.map((r) => r.marks[i]?.[1] ?? NaN)).toFixed(2)}`);
      const totals = runs.map((r) => r.totalMs);
      console.log(`  ${mode.padEnd(10)} total ${median(totals).toFixed(2)} ms (${Math.min(...totals).toFixed(2)}–${Math.max(...totals).toFixed(2)})  warmup ${median(runs.map((r) => r.warmupMs)).toFixed(1)}  | ${parts.join(", ")}${runs[0].planTransactions !== undefined ? `  tx ${runs[0].planTransactions}, reads ${runs[0].planReads}` : ""}`);
    }
  }
  for (const [name, times] of Object.entries(selfTimes)) {
    console.log(`${name}: self time over ${spec.runs} profiled runs (ms)`);
    for (const [fn, ms] of [...times].sort((a, b) => b[1] - a[1]).slice(0, 40)) {
      console.log(`${ms.toFixed(2).padStart(9)}  ${fn.slice(0, 110)}`);
    }
  }
  if (spec.json) console.log(JSON.stringify(results));
} finally {
  server.close();
}
