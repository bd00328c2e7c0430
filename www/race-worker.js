// A worker that compiles the race functions into its own modules when the cache misses.
import init, { LinkCache, moduleId } from "/node_modules/linkcache-web/linkcache_web.js";
import initWat, { watToWasm } from "/node_modules/linkcache-web/wat/linkcache_web_wat.js";
import { raceFunctions, raceSources } from "./samples.js";

self.onmessage = async ({ data: { db, worker, startAt } }) => {
  try {
    await Promise.all([init(), initWat()]);
    const cache = await LinkCache.open(db, {});
    await new Promise((r) => setTimeout(r, Math.max(0, startAt - Date.now()))); // start together
    let compiled = 0;
    const f = await cache.getOrCompile("race.f", async () => {
      compiled += 1;
      await new Promise((r) => setTimeout(r, 200)); // a slow compiler: both workers miss
      return raceSources(worker).map(watToWasm);
    });
    // The ids of this worker's own modules, by function, so that the page can tell
    // whose code each binding is.
    const own = Object.fromEntries(raceSources(worker).map((s, i) => [raceFunctions[i], moduleId(watToWasm(s))]));
    postMessage({ worker, result: f(6), compiled, bindings: cache.bindings(), own });
    cache.close();
  } catch (e) {
    postMessage({ worker, error: `${e.name}: ${e.message}` });
  }
};
