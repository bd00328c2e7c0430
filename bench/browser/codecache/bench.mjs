// Timed runs: every measurement is a fresh browser process on one persistent profile,
// sides interleaved (their order rotates run by run). No tracing in timed sessions.
//
//   node bench.mjs PROFILE_DIR RUNS [names=sql,brotli] [sides=memory,warm,cold,net] > out.json
//   JS_FLAGS="--wasm-caching-hard-threshold=60000" node bench.mjs ...   (supplementary run:
//       the same V8 flags in EVERY session, writer, reader and memory side alike)
//
// Sides: memory = bytes fetched before the clock, WebAssembly.compile;
//        warm   = compileStreaming(fetch("/lc/cs/NAME-warm")), answered by the service worker
//                 from Cache Storage, an entry the page put there (synthetic Response), with a
//                 code cache written by an earlier process (the writer session) if V8 wrote one;
//        cold   = the same route, a key whose entry an earlier process put there but never
//                 compiled (no code cache);
//        net    = compileStreaming(fetch("/net/NAME-warm")) from the HTTP cache (the site-served
//                 reference, not something linkcache-web can use), written by the writer too.
// Each: compile, instantiate through the module's own glue, one call; then `work` (a fixed
// workload, timed apart).
import { serve, session, summarize } from "./lib.mjs";

const [profile, runsArg = "7", namesArg = "sql,brotli", sidesArg = "memory,warm,cold,net"] = process.argv.slice(2);
const runs = Number(runsArg);
const names = namesArg.split(",");
const sides = sidesArg.split(",");
const extraArgs = process.env.JS_FLAGS ? [`--js-flags=${process.env.JS_FLAGS}`] : [];
const server = await serve();
const log = (...a) => process.stderr.write(a.join(" ") + "\n");

const setup = async ({ keys }) => {
  await E.ready({ needController: false });
  await E.register();
  for (const [k, n] of keys) await E.putCS(k, await E.bytes(n));
  return !!navigator.serviceWorker.controller;
};

const run = async ({ route, key, name, heatMs = 0, idleMs = 0 }) => {
  await E.ready({ needController: true });
  const buf = route === "memory" ? await E.bytes(name) : null;
  await E.tiny();
  const t0 = performance.now();
  const mod = await E.compile(route, key, buf);
  const t1 = performance.now();
  const api = await E.instantiate(name, mod);
  const t2 = performance.now();
  E.firstCall(name, api);
  const t3 = performance.now();
  E.work(name, api);
  const t4 = performance.now();
  if (heatMs) await E.heat(name, api, heatMs);
  if (idleMs) await new Promise((r) => setTimeout(r, idleMs));
  return { compile: t1 - t0, inst: t2 - t1, call: t3 - t2, total: t3 - t0, work: t4 - t3 };
};

const sideArgs = (side, name, i) => ({
  memory: { route: "memory", key: null, name },
  warm: { route: "cs", key: `${name}-warm`, name },
  cold: { route: "cs", key: `${name}-cold${i}`, name },
  net: { route: "net", key: `${name}-warm`, name },
})[side];

const keys = [];
for (const n of names) {
  keys.push([`${n}-warm`, n]);
  for (let i = 0; i < runs; i++) keys.push([`${n}-cold${i}`, n]);
}
log("setup", (await session(profile, server.url, setup, { keys }, { extraArgs })).result);

// Writer sessions: the route used hard (heat), then idle so V8 may write the code cache.
const check = {};
for (const name of names) {
  for (const side of sides.filter((s) => s === "warm" || s === "net")) {
    const a = sideArgs(side, name, 0);
    await session(profile, server.url, run, { ...a, heatMs: 4000, idleMs: 4000 }, { extraArgs });
    // One traced read (untimed) to see whether a later process hits the cache.
    const r = await session(profile, server.url, run, a, { extraArgs, trace: true });
    const s = summarize(r.events);
    const hit = s.detail.find((e) => e.name === "v8.wasm.moduleCacheHit");
    check[`${name}/${side}`] = {
      hit: !!hit, consumedCacheSize: hit?.args?.consumedCacheSize ?? 0,
      invalid: !!s.counts["v8.wasm.moduleCacheInvalid"], written: s.counts["v8.wasm.cachedModule"] ?? 0,
    };
    log("check", name, side, JSON.stringify(check[`${name}/${side}`]));
  }
}

const results = [];
for (let i = 0; i < runs; i++) {
  for (const name of names) {
    const order = sides.map((_, j) => sides[(i + j) % sides.length]);
    for (const side of order) {
      const { result } = await session(profile, server.url, run, sideArgs(side, name, i), { extraArgs });
      results.push({ run: i, name, side, ...result });
      log(i, name, side, Object.entries(result).map(([k, v]) => `${k}=${v.toFixed(2)}`).join(" "));
    }
  }
}
server.close();
console.log(JSON.stringify({ jsFlags: process.env.JS_FLAGS ?? null, runs, check, results }));
