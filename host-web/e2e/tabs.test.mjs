// Two tabs (pages of one browser context, one origin) share one cache: they race to
// compile the same functions, both call the right code, the duplicates resolve to one
// module in both, and one tab sees the other's modules without a reload.
import assert from "node:assert/strict";
import { withBrowser, openPage } from "./serve.mjs";

await withBrowser(async ({ browser, url }) => {
  const context = await browser.newContext();
  const [a, b] = [await openPage(context, url), await openPage(context, url)];
  const db = `tabs-${Date.now()}`;

  // Each tab's compiler produces its own bytes for the same functions, and is slow enough
  // that both tabs miss before either commits. Tab n's race.f adds n, so a result tells
  // whose code ran: both tabs must run the duplicate they are bound to, the earliest.
  const race = (page, tab) => page.evaluate(async ({ db, tab }) => {
    const cache = await LinkCache.open(db, {});
    window.cache = cache;
    const source = {
      "race.sq": `(module (func (export "race.sq") (param i32) (result i32) (i32.mul (local.get 0) (local.get 0))) (@custom "tab" "${tab}"))`,
      "race.f": `(module (import "linkcache:fn" "race.sq" (func $sq (param i32) (result i32)))
                  (func (export "race.f") (param i32) (result i32) (i32.add (call $sq (local.get 0)) (i32.const ${tab}))) (@custom "tab" "${tab}"))`,
    };
    let compiles = 0;
    const f = await cache.getOrCompile("race.f", async (miss) => {
      compiles += 1;
      await new Promise((r) => setTimeout(r, 300));
      return [watToWasm(source["race.sq"]), watToWasm(source["race.f"])];
    });
    return { result: f(7), compiles, bindings: cache.bindings(), own: moduleId(watToWasm(source["race.f"])) };
  }, { db, tab });

  const [ra, rb] = await Promise.all([race(a, 1), race(b, 2)]);
  assert.ok(ra.compiles >= 1 && rb.compiles >= 1, "both tabs compiled: the race happened");
  assert.deepEqual(ra.bindings, rb.bindings, "both tabs resolved the duplicates to the same modules");

  const modules = await a.evaluate(() => window.cache.modules());
  const defining = (name) => modules.filter((m) => m.functions.some((f) => f.name === name)).length;
  assert.equal(defining("race.f"), 2, "the race left two modules defining race.f");
  assert.equal(defining("race.sq"), 2);
  const earliest = modules.find((m) => m.functions.some((f) => f.name === "race.f")).id;
  assert.equal(ra.bindings["race.f"], earliest, "the earliest committed duplicate wins");
  const winner = earliest === ra.own ? 1 : 2;
  assert.ok([ra.own, rb.own].includes(earliest));
  assert.equal(ra.result, 49 + winner, "tab a ran the code of the duplicate it is bound to");
  assert.equal(rb.result, 49 + winner, "tab b ran the code of the duplicate it is bound to");

  // Tab b hears about tab a's addition and uses it without reloading.
  const heard = b.evaluate(() => new Promise((resolve) => window.cache.onChange((m) => resolve(m))));
  const added = await a.evaluate(async () =>
    window.cache.addModule(watToWasm(`(module (func (export "late.g") (result i32) (i32.const 42)))`)));
  const message = await heard;
  assert.equal(message.type, "added");
  assert.deepEqual(message.modules, [added]);
  const late = await b.evaluate(async () => (await window.cache.target("late.g"))());
  assert.equal(late, 42);

  // A worker of the same origin sees the same cache.
  const fromWorker = await a.evaluate(async (db) => {
    const code = `import init, { LinkCache } from "${location.origin}/pkg/linkcache_web.js";
      await init();
      const cache = await LinkCache.open(${JSON.stringify(db)}, {});
      const f = await cache.target("race.f");
      postMessage({ result: f(3), module: cache.bindings()["race.f"] });`;
    const worker = new Worker(URL.createObjectURL(new Blob([code], { type: "text/javascript" })), { type: "module" });
    return new Promise((resolve, reject) => { worker.onmessage = (e) => resolve(e.data); worker.onerror = (e) => reject(e.message); });
  }, db);
  assert.equal(fromWorker.result, 9 + winner);
  assert.equal(fromWorker.module, earliest, "the worker binds the same duplicate");
  console.log(`ok: two tabs and a worker share one cache; duplicates resolve to tab ${winner}'s`, earliest.slice(0, 12));

  // The graph shows the duplicates the race left, and which one this tab bound.
  const graph = await b.evaluate(() => window.cache.graph());
  const raceF = graph.functions.find((f) => f.name === "race.f");
  assert.equal(raceF.definedIn.length, 2);
  assert.equal(raceF.definedIn[0], earliest);
  assert.equal(raceF.boundTo, earliest);

  // Clearing in one tab tells the other.
  const cleared = b.evaluate(() => new Promise((resolve) => window.cache.onChange((m) => m.type === "cleared" && resolve(m))));
  await a.evaluate(() => window.cache.clear());
  assert.equal((await cleared).type, "cleared");
  assert.equal((await b.evaluate(() => window.cache.modules())).length, 0);
  // Tab b forgot its bindings: its next target is a miss, and no module was called broken.
  const afterClear = await b.evaluate(async () => ({
    bindings: Object.keys(window.cache.bindings()).length,
    report: await window.cache.tryTarget("race.f"),
    broken: window.cache.stats().brokenSkipped,
  }));
  assert.equal(afterClear.bindings, 0);
  assert.equal(afterClear.report.missCause, "unknown");
  assert.equal(afterClear.broken, 0);
  // Refilled by tab a, both tabs bind the same module again.
  const refilled = await a.evaluate(async () => {
    const id = await window.cache.addModule(watToWasm(`(module (func (export "late.h") (result i32) (i32.const 5)))`));
    return { id, value: (await window.cache.target("late.h"))() };
  });
  const inB = await b.evaluate(async () => ({ value: (await window.cache.target("late.h"))(), id: window.cache.bindings()["late.h"] }));
  assert.deepEqual(inB, refilled);
  console.log("ok: the graph shows the race's duplicates; clearing in one tab makes the other forget, not mark broken; both agree after a refill");

  // gc in one tab: the least recently used module goes whole, the other tab is told and
  // forgets what it had loaded of it; its misses are LinkCacheMiss instances.
  const gcDb = `gc-${Date.now()}`;
  const setUp = (page) => page.evaluate(async (db) => { window.gcCache = await LinkCache.open(db, {}); }, gcDb);
  await setUp(a);
  await setUp(b);
  const ids = await a.evaluate(async () => {
    const add = (n) => window.gcCache.addModule(watToWasm(`(module (func (export "gc.f${n}") (result i32) (i32.const ${n})))`));
    return [await add(1), await add(2), await add(3)];
  });
  // Tab b uses f1 and f3 (so f2 is the least recently used), and listens.
  await b.evaluate(async () => {
    window.gcSeen = [];
    window.gcCache.onChange((m) => m.type === "evicted" && window.gcSeen.push(m.modules));
    window.f1 = await window.gcCache.target("gc.f1");
    window.f3 = await window.gcCache.target("gc.f3");
  });
  const gc = await a.evaluate(async () => {
    const all = await window.gcCache.gc({ maxBytes: Number.MAX_SAFE_INTEGER });
    const one = await window.gcCache.gc({ maxBytes: all.remainingBytes - 1 });
    return { all, one, modules: (await window.gcCache.modules()).map((m) => m.id) };
  });
  assert.deepEqual(gc.all.evicted, []);
  assert.deepEqual(gc.one.evicted, [ids[1]], "the least recently used module, f2's, goes");
  assert.deepEqual(gc.modules, [ids[0], ids[2]]);
  await b.waitForFunction(() => window.gcSeen.length === 1);
  const inTabB = await b.evaluate(async () => {
    let error;
    try { await window.gcCache.target("gc.f2"); } catch (e) { error = e; }
    return {
      seen: window.gcSeen,
      isMiss: error instanceof window.lc.LinkCacheMiss,
      isLinkCacheError: error instanceof window.lc.LinkCacheError,
      missCause: error?.missCause,
      hasCause: error !== undefined && "cause" in error,
      bindings: window.gcCache.bindings(),
    };
  });
  assert.deepEqual(inTabB.seen, [[ids[1]]], "tab b heard of the eviction");
  assert.ok(inTabB.isMiss && inTabB.isLinkCacheError, "rejected with a LinkCacheMiss");
  assert.equal(inTabB.missCause, "unknown", "gone whole: a miss, not a broken module");
  assert.equal(inTabB.hasCause, false, "the miss cause is not in Error.cause");
  assert.deepEqual(Object.keys(inTabB.bindings).sort(), ["gc.f1", "gc.f3"], "tab b had not loaded f2: it keeps its bindings");
  // Everything goes: tab b had f1 and f3 loaded, so it forgets; what it holds still runs.
  await a.evaluate(() => window.gcCache.gc({ maxBytes: 0 }));
  await b.waitForFunction(() => window.gcSeen.length === 2);
  const afterAll = await b.evaluate(() => ({
    seen: window.gcSeen[1], bindings: Object.keys(window.gcCache.bindings()).length, calls: [window.f1(), window.f3()],
  }));
  assert.deepEqual(afterAll, { seen: [ids[0], ids[2]], bindings: 0, calls: [1, 3] });
  console.log("ok: gc in one tab evicts the least recently used module whole; the other tab is told, misses it as a LinkCacheMiss, forgets what it had loaded");
});
