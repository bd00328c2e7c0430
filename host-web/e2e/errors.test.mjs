// Error cases that need a real browser around the page: a storage quota that is really
// full (Chromium's DevTools protocol lowers this origin's quota) and a schema upgrade
// that another tab really blocks. Each must be a named error and leave a cache that works.
import assert from "node:assert/strict";
import { withBrowser, openPage } from "./serve.mjs";

await withBrowser(async ({ browser, url }) => {
  const context = await browser.newContext();
  const a = await openPage(context, url);

  // 1. Quota. 256 KiB for the whole origin: a small module fits, a 512 KiB one does not.
  const cdp = await context.newCDPSession(a);
  const origin = new URL(url).origin;
  await cdp.send("Storage.overrideQuotaForOrigin", { origin, quotaSize: 256 * 1024 });
  const quota = await a.evaluate(async () => {
    const cache = await LinkCache.open(`quota-${Date.now()}`, {});
    window.quotaCache = cache;
    const small = (n) => watToWasm(`(module (func (export "q.small${n}") (result i32) (i32.const ${n})))`);
    const big = watToWasm(`(module (func (export "q.big") (result i32) (i32.const 1))
                                    (@custom "padding" "${"x".repeat(512 * 1024)}"))`);
    await cache.addModule(small(1));
    let error;
    try { await cache.addModule(big); } catch (e) {
      error = { name: e.name, message: e.message, quotaClass: e instanceof lc.LinkCacheQuotaExceeded,
                storageClass: e instanceof lc.LinkCacheStorage, baseClass: e instanceof lc.LinkCacheError,
                cause: e.cause?.name, causeIsDomException: e.cause instanceof DOMException };
    }
    const afterBig = await cache.tryTarget("q.big");
    const listed = (await cache.modules()).length;
    await cache.addModule(small(2));
    const calls = [(await cache.target("q.small1"))(), (await cache.target("q.small2"))()];
    // getOrCompile with the quota full: the function runs from this tab's memory.
    const compiled = await cache.getOrCompile("q.big", () => big);
    const stats = await cache.refreshStats();
    return { error, bigHit: afterBig.hit, bigCause: afterBig.missCause, listed, calls,
             fromMemory: compiled(), notPersisted: stats.notPersisted, quota: stats.quota,
             usage: stats.usage, listedAfter: (await cache.modules()).length };
  });
  assert.equal(quota.error?.name, "LinkCacheQuotaExceeded", JSON.stringify(quota));
  assert.match(quota.error.message, /quota/);
  assert.ok(quota.error.quotaClass && quota.error.storageClass && quota.error.baseClass,
    `a LinkCacheQuotaExceeded, a LinkCacheStorage, a LinkCacheError: ${JSON.stringify(quota.error)}`);
  assert.equal(quota.error.cause, "QuotaExceededError", "Error.cause is the browser's DOMException");
  assert.ok(quota.error.causeIsDomException);
  assert.equal(quota.bigHit, false, "nothing of the aborted module was written");
  assert.equal(quota.bigCause, "unknown");
  assert.equal(quota.listed, 1);
  assert.deepEqual(quota.calls, [1, 2], "the cache works after the quota error");
  assert.equal(quota.fromMemory, 1, "getOrCompile returns the function with the quota full");
  assert.equal(quota.notPersisted, 1, "counted as not persisted");
  assert.equal(quota.listedAfter, 2, "and nothing of it was written");
  // navigator.storage.estimate() (Chromium's does not show the DevTools override).
  assert.ok(quota.quota > 0 && quota.usage > 0 && quota.usage <= quota.quota, JSON.stringify(quota));
  // With the quota back, the same module commits.
  await cdp.send("Storage.overrideQuotaForOrigin", { origin });
  const bigAfter = await a.evaluate(async () => {
    const big = watToWasm(`(module (func (export "q.big") (result i32) (i32.const 1))
                                    (@custom "padding" "${"x".repeat(512 * 1024)}"))`);
    await window.quotaCache.addModule(big);
    return (await window.quotaCache.target("q.big"))();
  });
  assert.equal(bigAfter, 1);
  console.log("ok: a full quota is LinkCacheQuotaExceeded, nothing half-written, the cache still works, getOrCompile runs from memory");

  // 2. Another tab holds version 1 of the database open and ignores "versionchange".
  const b = await openPage(context, url);
  const db = `blocked-${Date.now()}`;
  await b.evaluate((db) => new Promise((resolve, reject) => {
    const r = indexedDB.open(db, 1);
    r.onsuccess = () => { window.old = r.result; resolve(); };
    r.onerror = () => reject(r.error);
  }), db);
  const blocked = await a.evaluate(async (db) => {
    try { await LinkCache.open(db); return null; }
    catch (e) { return { name: e.name, message: e.message, isClass: e instanceof lc.LinkCacheUpgradeBlocked }; }
  }, db);
  assert.equal(blocked?.name, "LinkCacheUpgradeBlocked", JSON.stringify(blocked));
  assert.ok(blocked.isClass, "an instance of LinkCacheUpgradeBlocked");
  await b.evaluate(() => window.old.close());
  const opened = await a.evaluate(async (db) => {
    const cache = await LinkCache.open(db, {});
    await cache.addModule(watToWasm(`(module (func (export "b.f") (result i32) (i32.const 3)))`));
    return (await cache.target("b.f"))();
  }, db);
  assert.equal(opened, 3);
  console.log("ok: an upgrade blocked by another tab is LinkCacheUpgradeBlocked; it opens once that tab lets go");
});
