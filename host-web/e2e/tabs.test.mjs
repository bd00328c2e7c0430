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
});
