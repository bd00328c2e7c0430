// linkcache's browser benchmark, driven by `linkcache-bench` (bench/src/browser.rs):
// warm `target()` from IndexedDB against compiling the same bytes from memory, in
// Debian's headless Chromium through playwright-core (no browser download).
//
//   node bench.mjs SPEC.json   → prints one line of JSON with every session's timings
//
// SPEC: { pkgDir, profileDir, runs, firstRun?, database, warmup, rows: [{ name, target, arg, expected,
//   files: [paths to add], closure: [paths in instantiation order], globals: {name: value},
//   stubs: [namespaces of embedder imports to stub] }] }
//
// Every measurement runs in a fresh browser (a new process on a persistent profile, so
// IndexedDB and the HTTP cache survive and nothing compiled in memory does), one row per
// session: one session times linkcache-web, another compiles and instantiates the same
// bytes from memory, a third times the floor (raw IndexedDB: see `withoutCache`); their order
// rotates between runs. Two more sessions per run time
// loading the package itself (`import` + `init()`): one with the HTTP cache cleared
// first (a first visit), one with the package in the HTTP cache (a returning visitor;
// the package is served cacheable, as a site would); they alternate too. Before its clock starts, each side does the same work
// on an unrelated one-function module (`warmup`): the first IndexedDB access of a fresh
// browser and the first wasm compilation of a fresh tab cost tens of milliseconds that
// are the browser's start-up, not a target's; they are reported apart. Page timings use performance.now() in a cross-origin
// isolated page (5 µs resolution instead of 100 µs).
import { readFile } from "node:fs/promises";
import { chromium } from "playwright-core";
import { launchOptions as chromiumOptions, serve, sessions } from "./harness.mjs";

const spec = JSON.parse(await readFile(process.argv[2], "utf8"));
const files = [
  ...new Set([spec.warmup, ...spec.rows.flatMap((row) => [...row.files, ...row.closure])]),
];
const server = await serve({ pkgDir: spec.pkgDir, files, title: "linkcache bench" });
const launchOptions = chromiumOptions();
// Runs `body(arg)` in a page of a fresh browser on the persistent profile; with
// `clearHttpCache`, the browser's HTTP cache is emptied first.
const session = sessions({ profileDir: spec.profileDir, url: server.url, options: launchOptions });

const rows = spec.rows.map((row) => ({
  ...row,
  fileIndex: row.files.map((f) => files.indexOf(f)),
  closureIndex: row.closure.map((f) => files.indexOf(f)),
}));

// Fills IndexedDB: clears the database, adds every row's modules.
async function setup({ rows, database }) {
  const { default: init, LinkCache } = await import("/pkg/linkcache_web.js");
  await init({ module_or_path: "/pkg/linkcache_web_bg.wasm" });
  const stub = () => new Proxy({}, { get: () => () => 0 });
  const cache = await LinkCache.open(database, {});
  await cache.clear();
  await cache.addModule(new Uint8Array(await (await fetch("/wasm/0")).arrayBuffer()));
  const added = [];
  for (const row of rows) {
    for (const index of row.fileIndex) {
      const bytes = new Uint8Array(await (await fetch(`/wasm/${index}`)).arrayBuffer());
      const t = performance.now();
      await cache.addModule(bytes);
      added.push({ row: row.name, bytes: bytes.length, ms: performance.now() - t });
    }
  }
  cache.close();
  // One warm-up target per row, as a later tab would do.
  for (const row of rows) {
    const imports = Object.fromEntries(row.stubs.map((ns) => [ns, stub()]));
    const warm = await LinkCache.open(database, { imports });
    await warm.target(row.target);
    warm.close();
  }
  return added;
}

// linkcache-web in a fresh tab: load the package, open the cache, target, call.
async function withLinkcache({ row, database }) {
  const t0 = performance.now();
  const { default: init, LinkCache } = await import("/pkg/linkcache_web.js");
  await init({ module_or_path: "/pkg/linkcache_web_bg.wasm" });
  const initMs = performance.now() - t0;
  const stub = () => new Proxy({}, { get: () => () => 0 });
  const w = performance.now();
  const warm = await LinkCache.open(database, {});
  if ((await warm.target("bench.warmup"))() !== 1) throw new Error("bench.warmup");
  warm.close();
  const warmupMs = performance.now() - w;
  const out = { initMs, warmupMs, rows: {} };
  {
    const imports = Object.fromEntries(row.stubs.map((ns) => [ns, stub()]));
    let t = performance.now();
    const cache = await LinkCache.open(database, { imports });
    const openMs = performance.now() - t;
    t = performance.now();
    const f = await cache.target(row.target);
    const targetMs = performance.now() - t;
    t = performance.now();
    let result = null;
    if (row.arg !== null) result = String(f(row.arg));
    const callMs = performance.now() - t;
    if (row.expected !== null && result !== row.expected) {
      throw new Error(`${row.target}(${row.arg}) returned ${result}, expected ${row.expected}`);
    }
    const stats = cache.stats();
    cache.close();
    out.rows[row.name] = {
      openMs, targetMs, callMs: row.arg === null ? null : callMs, modulesLoaded: stats.modulesLoaded,
    };
  }
  return out;
}

// Loading the package in a fresh tab: `import` of its JS and `init()` (which fetches,
// compiles and instantiates its wasm). Reports whether the wasm came over the network
// (`transferSize` > 0) or from the HTTP cache.
async function packageLoad() {
  const t = performance.now();
  const { default: init } = await import("/pkg/linkcache_web.js");
  await init({ module_or_path: "/pkg/linkcache_web_bg.wasm" });
  const loadMs = performance.now() - t;
  const wasm = performance.getEntriesByType("resource").find((e) => e.name.endsWith("/pkg/linkcache_web_bg.wasm"));
  return { loadMs, transferSize: wasm?.transferSize ?? null };
}

// Without linkcache-web, in a fresh tab: the closure's bytes, every WebAssembly.compile
// started at once (as linkcache-web compiles a plan; compiled one after the other, a
// 10-module closure took 1.8× as long: BENCHMARKS.md, session 25), the closure
// instantiated in order, linked by hand, and a call.
// - `floor` false, the memory side: the bytes fetched before the clock starts; the
//   warm-up is the tab's first wasm compilation.
// - `floor` true, the floor of any IndexedDB-backed cache: after the same warm-up as
//   linkcache-web's, `indexedDB.open` and one read-only transaction with the target's
//   `by_function` lookup and the closure's bytes by key (the ids known in advance, as no
//   cache knows them), on the clock. What a row's target costs beyond it is the cache's
//   own work; what it costs beyond memory is IndexedDB's.
async function withoutCache({ row, database, floor }) {
  const stub = () => new Proxy({}, { get: () => () => 0 });
  const fetched = async () => {
    const all = [];
    for (const index of row.closureIndex) {
      all.push(new Uint8Array(await (await fetch(`/wasm/${index}`)).arrayBuffer()));
    }
    return all;
  };
  const req = (r) => new Promise((resolve, reject) => { r.onsuccess = () => resolve(r.result); r.onerror = () => reject(r.error); });
  const w = performance.now();
  let warmupMs;
  let ids = null;
  let all = null;
  if (floor) {
    const { default: init, LinkCache, moduleId } = await import("/pkg/linkcache_web.js");
    await init({ module_or_path: "/pkg/linkcache_web_bg.wasm" });
    const warm = await LinkCache.open(database, {});
    if ((await warm.target("bench.warmup"))() !== 1) throw new Error("bench.warmup");
    warm.close();
    warmupMs = performance.now() - w;
    ids = (await fetched()).map((bytes) => moduleId(bytes));
  } else {
    const bytes0 = new Uint8Array(await (await fetch("/wasm/0")).arrayBuffer());
    const warm = await WebAssembly.instantiate(await WebAssembly.compile(bytes0), {});
    if (warm.exports["bench.warmup"]() !== 1) throw new Error("bench.warmup");
    warmupMs = performance.now() - w;
    all = await fetched();
  }
  const t = performance.now();
  let db = null;
  if (floor) {
    db = await req(indexedDB.open(database));
    const tx = db.transaction(["modules", "manifests"], "readonly");
    const lookup = req(tx.objectStore("manifests").index("by_function").getAll(IDBKeyRange.only(row.target)));
    const read = ids.map((id) => req(tx.objectStore("modules").get(id)));
    await lookup;
    all = await Promise.all(read);
  }
  const fns = {};
  const globals = {};
  for (const [name, value] of Object.entries(row.globals)) {
    globals[name] = new WebAssembly.Global({ value: "i64", mutable: false }, BigInt(value));
  }
  const imports = Object.fromEntries(row.stubs.map((ns) => [ns, stub()]));
  imports["linkcache:fn"] = fns;
  imports["linkcache:global"] = globals;
  // compileMs: from the start until every compile has finished.
  let compileMs = 0;
  const started = all.map((bytes) => WebAssembly.compile(bytes));
  Promise.all(started).then(() => { compileMs = performance.now() - t; }, () => {});
  for (const module of started) {
    const instance = await WebAssembly.instantiate(await module, imports);
    for (const [name, value] of Object.entries(instance.exports)) {
      if (typeof value === "function") fns[name] = value;
    }
  }
  const loadMs = performance.now() - t;
  const c = performance.now();
  let result = null;
  if (row.arg !== null) result = String(fns[row.target](row.arg));
  const callMs = performance.now() - c;
  if (row.expected !== null && result !== row.expected) {
    throw new Error(`${row.target}(${row.arg}) returned ${result}, expected ${row.expected}`);
  }
  db?.close();
  return { warmupMs, rows: { [row.name]: { loadMs, compileMs, callMs: row.arg === null ? null : callMs } } };
}

try {
  const browserVersion = await (async () => {
    const browser = await chromium.launch(launchOptions);
    const version = browser.version();
    await browser.close();
    return version;
  })();
  const added = await session(setup, { rows, database: spec.database });
  const linkcache = [];
  const memory = [];
  const floors = [];
  const packageCold = [];
  const packageWarm = [];
  // `firstRun` numbers the runs from there (which side goes first rotates with the
  // number): a caller that runs one run at a time, interleaved with another package's,
  // keeps the rotation.
  for (let run = spec.firstRun ?? 0; run < (spec.firstRun ?? 0) + spec.runs; run++) {
    process.stderr.write(`    browser round ${run + 1}/${spec.runs}\n`);
    // The package, cold then warm or warm then cold (a warm load always follows a
    // session that loaded it, so the HTTP cache holds it).
    const cold = async () => packageCold.push(await session(packageLoad, null, { clearHttpCache: true }));
    const warm = async () => packageWarm.push(await session(packageLoad, null));
    if (run % 2 === 0) {
      await cold();
      await warm();
    } else {
      await warm();
      await cold();
    }
    // The three sides of a row, in an order that rotates with the run.
    const sides = [
      async (arg) => linkcache.push(await session(withLinkcache, arg)),
      async (arg) => memory.push(await session(withoutCache, { ...arg, floor: false })),
      async (arg) => floors.push(await session(withoutCache, { ...arg, floor: true })),
    ];
    for (const row of rows) {
      const arg = { row, database: spec.database };
      for (let i = 0; i < sides.length; i++) await sides[(run + i) % sides.length](arg);
    }
  }
  console.log(JSON.stringify({ browserVersion, added, linkcache, memory, floors, packageCold, packageWarm }));
} finally {
  server.close();
}
