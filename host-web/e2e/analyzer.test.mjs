// The analyzer (wasmparser's validator and the analysis) is a wasm file of its own in the
// npm package (analyzer/): a page that only targets never fetches it; the first
// `addModule` or `importBundle` of a page fetches it, once.
import assert from "node:assert/strict";
import { withBrowser, openPage } from "./serve.mjs";

/** The analyzer's files this page fetched (the Resource Timing entries). */
const analyzerFetches = (page) =>
  page.evaluate(() =>
    performance
      .getEntriesByType("resource")
      .map((entry) => new URL(entry.name).pathname)
      .filter((path) => path.startsWith("/pkg/analyzer/"))
      .sort(),
  );
const ANALYZER = ["/pkg/analyzer/linkcache_web_analyzer.js", "/pkg/analyzer/linkcache_web_analyzer_bg.wasm"];

await withBrowser(async ({ browser, url }) => {
  const context = await browser.newContext();

  // A page that adds two modules fetches the analyzer once.
  const writer = await openPage(context, url);
  const bundle = await writer.evaluate(async () => {
    const cache = await LinkCache.open("analyzer-e2e", {});
    await cache.clear();
    await cache.addModule(watToWasm(`(module
      (import "linkcache:fn" "a.leaf" (func $leaf (result i32)))
      (func (export "a.top") (result i32) (i32.add (call $leaf) (i32.const 1))))`));
    await cache.addModule(watToWasm(`(module (func (export "a.leaf") (result i32) (i32.const 41)))`));
    const bytes = await cache.exportBundle();
    cache.close();
    return Array.from(bytes);
  });
  assert.deepEqual(await analyzerFetches(writer), ANALYZER, "two addModule fetch the analyzer once");

  // A fresh page that only targets never fetches it.
  const reader = await openPage(context, url);
  const value = await reader.evaluate(async () => {
    const cache = await LinkCache.open("analyzer-e2e", {});
    const top = await cache.target("a.top");
    const result = top();
    cache.close();
    return result;
  });
  assert.equal(value, 42);
  assert.deepEqual(await analyzerFetches(reader), [], "a page that only targets fetched the analyzer");

  // importBundle checks every bundled module through the analyzer, and an invalid module
  // is refused with the analyzer's reason, as before the split.
  const importer = await openPage(context, url);
  const imported = await importer.evaluate(async (bundle) => {
    const cache = await LinkCache.open("analyzer-e2e-import", {});
    await cache.clear();
    const ids = await cache.importBundle(new Uint8Array(bundle));
    const top = await cache.target("a.top");
    let invalid;
    try {
      await cache.addModule(new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5]));
    } catch (e) {
      invalid = { isClass: e instanceof lc.LinkCacheInvalidModule, name: e.name, message: e.message };
    }
    cache.close();
    return { ids: ids.length, value: top(), invalid };
  }, bundle);
  assert.deepEqual({ ids: imported.ids, value: imported.value }, { ids: 2, value: 42 });
  assert.equal(imported.invalid?.name, "LinkCacheInvalidModule", JSON.stringify(imported.invalid));
  assert.ok(imported.invalid.isClass, "the error is a LinkCacheInvalidModule");
  assert.match(imported.invalid.message, /invalid WebAssembly module|module ends|unexpected end/i);
  assert.deepEqual(await analyzerFetches(importer), ANALYZER, "importBundle and addModule fetch the analyzer once");
  console.log("ok: the analyzer loads on first addModule or importBundle, once per page, never for a page that only targets");
});
