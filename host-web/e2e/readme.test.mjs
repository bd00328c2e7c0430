// The npm README's usage example, run as written (its import pointed at the built
// package, `compile` supplied), so the first thing a reader copies works.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { withBrowser, openPage } from "./serve.mjs";

const readme = await readFile(new URL("../npm/README.md", import.meta.url), "utf8");
const example = readme.match(/```js\n([\s\S]*?)```/)[1];

await withBrowser(async ({ browser, url }) => {
  const page = await openPage(await browser.newContext(), url);
  const logs = [];
  page.on("console", (m) => logs.push(m.text()));
  await page.evaluate(() => {
    // The reader's compiler: math.fib in a module of its own.
    window.compile = async (name) => {
      window.compiled = (window.compiled ?? []).concat(name);
      return watToWasm(`(module (func $fib (export "math.fib") (param i64) (result i64)
        (if (result i64) (i64.lt_s (local.get 0) (i64.const 2)) (then (local.get 0))
          (else (i64.add (call $fib (i64.sub (local.get 0) (i64.const 1)))
                         (call $fib (i64.sub (local.get 0) (i64.const 2))))))))`);
    };
  });
  const script = example.replace('from "linkcache-web/wat"', 'from "/pkg/wat/linkcache_web_wat.js"').replace('from "linkcache-web"', 'from "/pkg/linkcache_web.js"') +
    `\nwindow.example = { quad: String(quad(3n)), fib: String(fib(10n)), stats: cache.stats() };`;
  await page.addScriptTag({ type: "module", content: script });
  await page.waitForFunction(() => window.example, null, { timeout: 10000 });
  const result = await page.evaluate(() => ({ ...window.example, compiled: window.compiled }));
  assert.equal(result.quad, "81");
  assert.equal(result.fib, "55");
  assert.deepEqual(result.compiled, ["math.fib"], "the compile callback ran once, for the miss");
  assert.equal(result.stats.hits, 2);
  assert.equal(result.stats.misses.unknown, 1);
  assert.ok(logs.some((l) => l.includes("[object Object]") || l.includes("hits")), "stats() logged");
  console.log("ok: the README's example runs as written");
});
