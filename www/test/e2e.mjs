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

async function open() {
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error("page error:", e.message));
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

const tests = [];
const test = (name, body) => tests.push({ name, body });

let first;
test("a first call compiles", async () => {
  first = await open();
  await first.click("#clear");
  await first.waitForFunction(() => document.getElementById("module-count").textContent === "0");
  await callAndWait(first, "math.fib");
  assert.equal(await text(first, "#outcome"), "miss → compiled");
  assert.equal(await text(first, "#result"), "75025");
  assert.equal(await text(first, "#compiled-count"), "2", "math.fib and the util module it calls");
  await first.screenshot({ path: new URL("first-call-compiles.png", results).pathname });
});

test("after a reload the same call is a hit with nothing compiled", async () => {
  await first.reload();
  await first.waitForSelector("body[data-ready=true]");
  await callAndWait(first, "math.fib");
  assert.equal(await text(first, "#outcome"), "hit");
  assert.equal(await text(first, "#compiled-count"), "0");
  assert.match(await text(first, "#loaded-list"), /^2 \(/, "both modules loaded from IndexedDB");
  const stats = JSON.parse(await text(first, "#stats"));
  assert.equal(stats.modulesAdded, 0);
  assert.equal(stats.modulesCompiled, 2, "compiled by the browser from cached bytes, not by the compiler");
  await first.screenshot({ path: new URL("reload-hit.png", results).pathname });
});

test("two tabs share one cache", async () => {
  const second = await open();
  const before = Number(await text(second, "#module-count"));
  await callAndWait(first, "math.gcd");
  assert.equal(await text(first, "#outcome"), "miss → compiled");
  // The second tab hears of the new module without a reload ...
  await second.waitForFunction((n) => Number(document.getElementById("module-count").textContent) > n, before);
  // ... and calls it without compiling.
  await callAndWait(second, "math.gcd");
  assert.equal(await text(second, "#outcome"), "hit");
  assert.equal(await text(second, "#result"), "21");
  await second.screenshot({ path: new URL("two-tabs.png", results).pathname });
  await second.close();
});

test("the race leaves duplicates that resolve", async () => {
  await first.click("#race-button");
  await first.waitForSelector("#race-summary", { timeout: 30000 });
  const duplicates = Number(await first.getAttribute("#race-result", "data-duplicates"));
  assert.equal(duplicates, 2, "each worker committed its own module");
  assert.equal(await first.getAttribute("#race-result", "data-agree"), "true");
  assert.match(await text(first, "#race-result"), /race\.f\(6\) = 3[78]/);
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
process.exit(failures ? 1 : 0);
