// Detection runs (tracing on; never timed): for each route and module, a "write" session
// (compileStreaming through the route, instantiate, first call, heat for HEAT ms, stay
// idle for IDLE ms so V8's caching timeout can fire) and then READS fresh sessions that
// only compile, instantiate and call. Prints the code-cache trace events of each.
//
//   node detect.mjs PROFILE_DIR [routes=net,cnet,cs,mem] [names=sql,brotli] [heatMs=3000] [idleMs=5000] [reads=2] [tag]
import { rm } from "node:fs/promises";
import { serve, session, summarize } from "./lib.mjs";

const [profile, routesArg = "net,cnet,cs,mem", namesArg = "sql,brotli", heatArg = "3000",
  idleArg = "5000", readsArg = "2", tag = "d"] = process.argv.slice(2);
const routes = routesArg.split(",");
const names = namesArg.split(",");
const server = await serve();
// Diagnostic only: extra Chromium flags for the write sessions (never for reads or timed runs).
const writeArgs = process.env.WRITE_ARGS ? process.env.WRITE_ARGS.split(" ") : [];
const readArgs = process.env.READ_ARGS ? process.env.READ_ARGS.split(" ") : [];

const setup = async ({ names, keys, netKeys }) => {
  await E.ready({ needController: false });
  await E.register();
  for (const n of names) await E.putIDB(n, await E.bytes(n));
  for (const [k, n] of keys) await E.putCS(k, await E.bytes(n));
  for (const k of netKeys) await E.addNet(k);
  return { controlled: !!navigator.serviceWorker.controller, caches: await caches.keys() };
};

const run = async ({ route, key, name, heatMs, idleMs }) => {
  await E.ready({ needController: route !== "net" });
  await E.tiny();
  const t0 = performance.now();
  const mod = await E.compile(route, key);
  const t1 = performance.now();
  const api = await E.instantiate(name, mod);
  const t2 = performance.now();
  E.firstCall(name, api);
  const t3 = performance.now();
  E.work(name, api);
  const t4 = performance.now();
  const iters = heatMs ? await E.heat(name, api, heatMs) : 0;
  if (idleMs) await new Promise((r) => setTimeout(r, idleMs));
  return { compile: t1 - t0, inst: t2 - t1, call: t3 - t2, work: t4 - t3, iters };
};

const keys = [];
const netKeys = [];
for (const n of names) {
  for (const r of routes) {
    const key = `${n}-${tag}${r}`;
    if (r === "cs") keys.push([key, n]);
    if (r === "cnet") netKeys.push(key);
  }
}
const s = await session(profile, server.url, setup, { names, keys, netKeys });
console.log("setup", JSON.stringify(s.result));

for (const name of names) {
  for (const route of routes) {
    const key = `${name}-${tag}${route}`;
    const w = await session(profile, server.url, run,
      { route, key, name, heatMs: Number(heatArg), idleMs: Number(idleArg) }, { trace: true, extraArgs: writeArgs });
    console.log(`${name} ${route} write`, JSON.stringify(w.result), JSON.stringify(summarize(w.events)));
    for (let i = 0; i < Number(readsArg); i++) {
      const r = await session(profile, server.url, run, { route, key, name, heatMs: 0, idleMs: 300 }, { trace: true, extraArgs: readArgs });
      console.log(`${name} ${route} read${i}`, JSON.stringify(r.result), JSON.stringify(summarize(r.events)));
    }
  }
}
server.close();
