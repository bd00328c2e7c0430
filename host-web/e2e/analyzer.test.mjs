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
/** Two modules in WebAssembly text: `${prefix}.top` returns `${prefix}.leaf`'s `leaf` + 1. */
const pair = (prefix, leaf) => [
  `(module
      (import "linkcache:fn" "${prefix}.leaf" (func $leaf (result i32)))
      (func (export "${prefix}.top") (result i32) (i32.add (call $leaf) (i32.const 1))))`,
  `(module (func (export "${prefix}.leaf") (result i32) (i32.const ${leaf})))`,
];

await withBrowser(async ({ browser, url }) => {
  const context = await browser.newContext();

  // A page that adds two modules fetches the analyzer once.
  const writer = await openPage(context, url);
  const bundle = await writer.evaluate(async (texts) => {
    const cache = await LinkCache.open("analyzer-e2e", {});
    await cache.clear();
    for (const text of texts) await cache.addModule(watToWasm(text));
    const bytes = await cache.exportBundle();
    cache.close();
    return Array.from(bytes);
  }, pair("a", 41));
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

  // The analyzer cannot be fetched (a deployment that left out analyzer/, say): adding is
  // a LinkCacheError that names it, nothing is written, and once the file is there again
  // the same page adds.
  const offline = await openPage(context, url);
  const blocked = (route) => route.abort("connectionrefused");
  await offline.route("**/pkg/analyzer/**", blocked);
  const failed = await offline.evaluate(async () => {
    const cache = await LinkCache.open("analyzer-e2e-offline", {});
    await cache.clear();
    let error;
    try {
      await cache.addModule(watToWasm(`(module (func (export "o.f") (result i32) (i32.const 7)))`));
    } catch (e) {
      error = { name: e.name, message: e.message, isError: e instanceof lc.LinkCacheError,
                isInvalid: e instanceof lc.LinkCacheInvalidModule };
    }
    const listed = (await cache.modules()).length;
    cache.close();
    return { error, listed };
  });
  assert.equal(failed.error?.name, "LinkCacheError", JSON.stringify(failed));
  assert.ok(failed.error.isError && !failed.error.isInvalid, "a LinkCacheError, not an invalid module");
  assert.match(failed.error.message, /analyzer\/linkcache_web_analyzer\.js/);
  assert.equal(failed.listed, 0, "nothing was written");
  await offline.unroute("**/pkg/analyzer/**", blocked);
  const retried = await offline.evaluate(async () => {
    const cache = await LinkCache.open("analyzer-e2e-offline", {});
    await cache.addModule(watToWasm(`(module (func (export "o.f") (result i32) (i32.const 7)))`));
    const value = (await cache.target("o.f"))();
    cache.close();
    return value;
  });
  assert.equal(retried, 7, "the next addModule loads the analyzer and adds");

  // A manifest another analyzer version checked is checked again at load, through the
  // analyzer the package loads then; with the analyzer unreachable the target fails
  // with the LinkCacheError, and the module is not taken for broken.
  const older = await openPage(context, url);
  await older.evaluate(async (texts) => {
    const cache = await LinkCache.open("analyzer-e2e-older", {});
    await cache.clear();
    for (const text of texts) await cache.addModule(watToWasm(text));
    cache.close();
    // What an earlier analyzer version would have recorded.
    const db = await new Promise((resolve, reject) => {
      const open = indexedDB.open("analyzer-e2e-older");
      open.onsuccess = () => resolve(open.result);
      open.onerror = () => reject(open.error);
    });
    const tx = db.transaction("manifests", "readwrite");
    const store = tx.objectStore("manifests");
    const all = store.getAll();
    all.onsuccess = () => { for (const value of all.result) store.put({ ...value, analyzer: 0 }, value.id); };
    await new Promise((resolve, reject) => { tx.oncomplete = resolve; tx.onerror = () => reject(tx.error); });
    db.close();
  }, pair("v", 9));
  const stale = await openPage(context, url);
  await stale.route("**/pkg/analyzer/**", blocked);
  const unreachable = await stale.evaluate(async () => {
    const cache = await LinkCache.open("analyzer-e2e-older", {});
    const report = await cache.tryTarget("v.top");
    const stats = cache.stats();
    cache.close();
    return { hit: report.hit, error: report.error?.name, message: report.message,
             broken: stats.brokenSkipped, checked: stats.manifestsChecked };
  });
  assert.equal(unreachable.hit, false);
  assert.equal(unreachable.error, "LinkCacheError", JSON.stringify(unreachable));
  assert.match(unreachable.message, /analyzer/);
  assert.equal(unreachable.broken, 0, "a module is not broken because the analyzer did not load");
  assert.equal(unreachable.checked, 0);
  await stale.unroute("**/pkg/analyzer/**", blocked);
  const checked = await stale.evaluate(async () => {
    const cache = await LinkCache.open("analyzer-e2e-older", {});
    const value = (await cache.target("v.top"))();
    const stats = cache.stats();
    cache.close();
    return { value, checked: stats.manifestsChecked, broken: stats.brokenSkipped };
  });
  assert.deepEqual(checked, { value: 10, checked: 2, broken: 0 }, "both manifests checked once, through the analyzer");
  assert.deepEqual([...new Set(await analyzerFetches(stale))], ANALYZER, "the load fetched the analyzer");
  console.log("ok: an analyzer that does not load is a LinkCacheError, nothing written or broken; a manifest of another analyzer version is checked through it at load");
});
