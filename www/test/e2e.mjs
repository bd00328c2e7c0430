// End-to-end tests of the demo page in Debian's headless Chromium (playwright-core; no
// browser download). Each test saves a screenshot under www/test-results/.
import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import { chromium } from "playwright-core";
import { startServer } from "../serve.mjs";

const results = new URL("../test-results/", import.meta.url);
await mkdir(results, { recursive: true });
const server = await startServer(0);
const url = `http://127.0.0.1:${server.address().port}/`;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 1100 } });

/** Uncaught errors of every page: any fails the run, even when every test passed. */
const pageErrors = [];

async function open() {
  const page = await context.newPage();
  page.on("pageerror", (e) => {
    pageErrors.push(e.message);
    console.error("page error:", e.message);
  });
  await page.goto(url);
  await page.waitForSelector("body[data-ready=true]");
  return page;
}

async function text(page, selector) {
  return (await page.textContent(selector)).trim();
}

async function callAndWait(page, func) {
  await page.evaluate(() => (document.getElementById("call-time").textContent = "–"));
  await page.click(`[id="call-${func}"]`);
  await page.waitForFunction(() => document.getElementById("call-time").textContent !== "–" || !document.getElementById("error").hidden);
}

// The page's cache's own statistics, read through the object the page exposes.
function stats(page) {
  return page.evaluate(() => window.linkcacheDemo.cache.stats());
}

async function cachedModules(page) {
  return page.evaluate(async () => (await window.linkcacheDemo.cache.modules()).length);
}

// A number the page rounded for people (`32 ms`, `0.041 ms`, `1.2 KB`, `1,250`), back
// as a number in ms or bytes.
function shown(text) {
  const match = /^(<\s*)?([\d,.]+)\s*(ms|B|KB|MB)?/.exec(text.trim());
  assert.ok(match, `no number in "${text}"`);
  const value = Number(match[2].replaceAll(",", ""));
  return value * ({ KB: 1e3, MB: 1e6 }[match[3]] ?? 1);
}

// `shown` is `exact` rounded to two significant digits (or below the smallest shown).
function assertRounded(text, exact, what) {
  if (text.startsWith("<")) return assert.ok(exact < shown(text), `${what}: ${exact} shown as "${text}"`);
  const tolerance = Math.max(Math.abs(exact) * 0.05, 0.0005, exact >= 100 && !/[KM]B/.test(text) ? 0.5 : 0);
  assert.ok(Math.abs(shown(text) - exact) <= tolerance, `${what}: ${exact} shown as "${text}"`);
}

// Calls `func` and checks that the last-call summary, the chart's bar for this call and
// the tab's summary show what `stats()` says this call did. Returns the deltas.
async function callAndCheck(page, func, kind) {
  const before = await stats(page);
  await callAndWait(page, func);
  assert.ok(await page.isHidden("#error"), `calling ${func} showed an error: ${await text(page, "#error")}`);
  const after = await stats(page);
  const cached = await cachedModules(page);
  const delta = (key) => after[key] - before[key];

  // The last call, against the difference of stats() before and after it.
  assert.equal(shown(await text(page, "#compiled-count")), delta("modulesAdded"), "modules compiled by the demo's compiler");
  const loaded = await text(page, "#loaded-count");
  if (delta("modulesLoaded") === 0) assert.match(loaded, /^none/);
  else assert.match(loaded, new RegExp(`^${delta("modulesLoaded")} of ${cached} cached`), "modules loaded of cached");
  assert.equal(shown(await text(page, "#browser-compiled")), delta("modulesCompiled"));
  assertRounded(await text(page, "#bytes-read"), delta("bytesRead"), "bytes read by this call");
  assertRounded(await text(page, "#target-time"), delta("timeMs"), "time in target() of this call");

  // The chart: this call's bar, marked as the last, coloured by what stats() says it took.
  const bar = page.locator(`#call-chart g.bar[data-func="${func}"][data-kind="${kind}"]`);
  assert.equal(await bar.count(), 1, `one ${kind} bar for ${func}`);
  assert.match(await bar.getAttribute("class"), /\blast\b/);
  const how = delta("modulesAdded") > 0 ? "compiled" : delta("modulesLoaded") > 0 ? "loaded" : "bound";
  assert.equal(await bar.getAttribute("data-how"), how);
  const barMs = Number(await bar.getAttribute("data-ms"));
  // The call's time holds its time in target() (give or take the page clock's 5 µs steps).
  assert.ok(barMs + 0.02 >= delta("timeMs"), `the bar (${barMs} ms) holds the time in target() (${delta("timeMs")} ms)`);
  assert.equal(await text(page, `#call-chart g.bar.last text.bar-value`), await text(page, "#call-time"), "the bar's label is the call's time");
  assertRounded(await text(page, "#call-time"), barMs, "the call's time");
  assert.equal(await page.locator("#call-chart g.bar.last").count(), 1, "one bar is the last call's");

  // The tab's summary, against stats() itself.
  assert.equal(shown(await text(page, "#sum-hits")), after.hits);
  const misses = Object.values(after.misses).reduce((a, b) => a + b, 0);
  assert.equal(shown(await text(page, "#sum-misses")), misses);
  for (const [cause, n] of Object.entries(after.misses)) {
    assert.match(await text(page, "#sum-misses"), new RegExp(`${cause.replaceAll("_", " ")}: ${n}\\b`));
  }
  assert.equal(await text(page, "#sum-loaded"), `${after.modulesLoaded} of ${cached} cached`);
  assert.equal(shown(await text(page, "#sum-compiled")), after.modulesCompiled);
  assert.equal(shown(await text(page, "#sum-added")), after.modulesAdded);
  assertRounded(await text(page, "#sum-bytes"), after.bytesRead, "bytes read by this tab");
  assertRounded(await text(page, "#sum-time"), after.timeMs, "time in target() of this tab");
  assert.deepEqual(JSON.parse(await text(page, "#stats")), after, "the raw statistics behind the disclosure");
  return { delta, after, how };
}

// The graph keeps each module whole: its functions in one column inside its box, no
// two module boxes overlap, and every call edge is drawn (has a length). Returns the
// module boxes and the number of edges.
async function assertModulesKeptTogether(page) {
  const { boxes, edges } = await page.evaluate(() => {
    const graph = window.linkcacheDemo.graph;
    return {
      boxes: graph.nodes(":parent").map((m) => ({
        id: m.id(),
        box: m.boundingBox(),
        xs: m.children().map((f) => f.position("x")),
      })),
      edges: graph.edges().map((e) => ({ id: e.id(), box: e.boundingBox() })),
    };
  });
  for (const { id, box } of edges) assert.ok(box.w + box.h > 0, `the edge ${id} is drawn`);
  assert.ok(boxes.length > 0, "modules are drawn");
  for (const { id, xs } of boxes) {
    assert.ok(xs.every((x) => x === xs[0]), `the functions of ${id.slice(0, 8)} stand in one column`);
  }
  for (const [i, a] of boxes.entries()) {
    for (const b of boxes.slice(i + 1)) {
      const apart = a.box.x2 <= b.box.x1 || b.box.x2 <= a.box.x1 || a.box.y2 <= b.box.y1 || b.box.y2 <= a.box.y1;
      assert.ok(apart, `module boxes ${a.id.slice(0, 8)} and ${b.id.slice(0, 8)} overlap`);
    }
  }
  return { boxes, edges: edges.length };
}

const tests = [];
const test = (name, body) => tests.push({ name, body });

let first;
test("a first call compiles", async () => {
  first = await open();
  await first.click("#clear");
  await first.waitForFunction(() => document.getElementById("module-count").textContent === "0");
  const { delta } = await callAndCheck(first, "math.fib", "cold");
  assert.equal(await text(first, "#outcome"), "miss → compiled");
  assert.equal(await text(first, "#result"), "75025");
  assert.equal(await text(first, "#compiled-count"), "2 modules", "math.fib and the util module it calls");
  assert.equal(delta("modulesAdded"), 2);
  assert.equal(await first.getAttribute("#call-chart g.bar.last", "data-how"), "compiled");
  const { boxes, edges } = await assertModulesKeptTogether(first);
  assert.equal(boxes.length, 2, "math.fib's module and util's");
  assert.equal(edges, 1, "math.fib calls util.add");
  await first.screenshot({ path: new URL("first-call-compiles.png", results).pathname });
});

test("a warm call is drawn beside the cold one", async () => {
  const { delta } = await callAndCheck(first, "math.fib", "warm");
  assert.equal(await text(first, "#outcome"), "hit");
  assert.equal(delta("modulesLoaded"), 0, "already bound: nothing loaded");
  assert.equal(await text(first, "#loaded-count"), "none (already loaded in this tab)");
  assert.equal(await first.locator("#call-chart g.bar").count(), 2, "math.fib cold and warm");
  assert.equal(await first.getAttribute('#call-chart g.bar[data-kind="cold"]', "data-how"), "compiled");
  assert.equal(await first.getAttribute('#call-chart g.bar[data-kind="warm"]', "data-how"), "bound");
});

test("after a reload the same call is a hit with nothing compiled", async () => {
  await first.reload();
  await first.waitForSelector("body[data-ready=true]");
  const { delta, after } = await callAndCheck(first, "math.fib", "cold");
  assert.equal(await text(first, "#outcome"), "hit");
  assert.equal(await text(first, "#compiled-count"), "0 modules");
  assert.match(await text(first, "#loaded-count"), /^2 of 2 cached \(/, "both modules loaded from IndexedDB");
  assert.equal(delta("modulesLoaded"), 2);
  assert.ok(delta("bytesRead") > 0, "the modules' bytes came from IndexedDB");
  assert.equal(after.modulesAdded, 0);
  assert.equal(after.modulesCompiled, 2, "compiled by the browser from cached bytes, not by the compiler");
  assert.equal(await first.getAttribute("#call-chart g.bar.last", "data-how"), "loaded");
  await first.screenshot({ path: new URL("reload-hit.png", results).pathname });
  await callAndCheck(first, "math.pow", "cold");
  await callAndCheck(first, "math.pow", "warm");
});

test("two tabs share one cache", async () => {
  const second = await open();
  const before = Number(await text(second, "#module-count"));
  await callAndWait(first, "math.gcd");
  assert.equal(await text(first, "#outcome"), "miss → compiled");
  // The second tab hears of the new module without a reload ...
  await second.waitForFunction((n) => Number(document.getElementById("module-count").textContent) > n, before);
  // ... and calls it without compiling.
  await callAndCheck(second, "math.gcd", "cold");
  assert.equal(await text(second, "#outcome"), "hit");
  assert.equal(await text(second, "#result"), "21");
  await second.screenshot({ path: new URL("two-tabs.png", results).pathname });
  await second.close();
});

test("a call through several modules: its modules stay together in the graph", async () => {
  const { delta } = await callAndCheck(first, "stack.run", "cold");
  assert.equal(await text(first, "#result"), "3", "gcd(3^20 mod 1000000007, 6561)");
  assert.equal(delta("modulesAdded"), 1, "only stack.run's own module is new");
  const { boxes, edges } = await assertModulesKeptTogether(first);
  assert.equal(boxes.length, 5, "stack, pow, gcd, util and fib's modules");
  assert.equal(edges, 4, "stack.run → math.pow, math.gcd; math.pow → util.mul; math.fib → util.add");
  await callAndCheck(first, "stack.run", "warm");
  await first.locator("#call-chart").screenshot({ path: new URL("call-chart.png", results).pathname });
  await first.locator("#graph").screenshot({ path: new URL("graph.png", results).pathname });
  await first.locator("#stats-section").screenshot({ path: new URL("summary.png", results).pathname });
  await first.screenshot({ path: new URL("several-modules.png", results).pathname });
});

test("the race leaves duplicates that resolve, and both workers run the code they are bound to", async () => {
  await first.click("#race-button");
  await first.waitForSelector("#race-summary", { timeout: 30000 });
  const duplicates = Number(await first.getAttribute("#race-result", "data-duplicates"));
  assert.equal(duplicates, 2, "each worker committed its own module");
  // Checked here from what the workers reported, not from the page's own verdict. Each
  // worker's duplicates return their own values (samples.js): race.f(6) is
  // 36 + 10·tag(race.sq's worker) + tag(race.f's worker), A's tag 1, B's 2.
  const race = await first.evaluate(() => window.linkcacheDemo.race);
  assert.equal(race.results.length, 2);
  const [a, b] = race.results;
  const tag = { A: 1, B: 2 };
  for (const func of ["race.sq", "race.f"]) {
    assert.equal(a.bindings[func], b.bindings[func], `both workers bound ${func} to one module`);
    assert.notEqual(a.own[func], b.own[func], `the workers compiled different bytes for ${func}`);
  }
  const ownerOf = (func) => race.results.find((r) => r.own[func] === a.bindings[func])?.worker;
  const [sq, f] = [ownerOf("race.sq"), ownerOf("race.f")];
  assert.ok(sq && f, "bound to modules the workers compiled");
  const expected = 36 + 10 * tag[sq] + tag[f];
  for (const r of race.results) {
    assert.equal(r.result, expected, `worker ${r.worker} ran the code it is bound to (race.sq: ${sq}'s, race.f: ${f}'s)`);
  }
  assert.equal(await first.getAttribute("#race-result", "data-agree"), "true");
  assert.match(await text(first, "#race-result"), new RegExp(`race\\.f\\(6\\) = ${expected}`));
  await first.screenshot({ path: new URL("race.png", results).pathname });
});

test("an invalid module gives a visible error", async () => {
  await first.fill("#editor", "(module (func (export \"bad\") (result i32) (i64.const 1)))");
  await first.click("#add-module");
  await first.waitForSelector("#error:not([hidden])");
  const message = await text(first, "#error");
  assert.match(message, /LinkCacheInvalidModule/);
  assert.match(message, /type mismatch/);
  await first.screenshot({ path: new URL("invalid-module.png", results).pathname });
  // The page still works afterwards.
  await callAndWait(first, "math.gcd");
  assert.equal(await text(first, "#result"), "21");
});

let failures = 0;
for (const { name, body } of tests) {
  try {
    await body();
    console.log(`ok   ${name}`);
  } catch (e) {
    failures += 1;
    console.log(`FAIL ${name}\n${e.stack}`);
  }
}
await browser.close();
server.close();
console.log(`${tests.length - failures}/${tests.length} passed; screenshots in www/test-results/`);
if (pageErrors.length) {
  failures += 1;
  console.log(`FAIL uncaught errors in the pages: ${pageErrors.join("; ")}`);
}
process.exit(failures ? 1 : 0);
