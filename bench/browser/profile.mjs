// A CPU profile of one linkcache-web `target()` in headless Chromium, by function (self
// time), to see where the browser side of the benchmarks spends its time:
//
//   node bench/browser/profile.mjs MODULE.wasm FUNC_NAME [STUB_NAMESPACE]
//
// Uses the release package the benchmarks built (target/bench-browser/pkg; run
// `cargo run --release -p linkcache-bench -- --only browser` once first). Adds the module
// to a fresh database, then profiles `LinkCache.open` + `target(FUNC_NAME)` in the same
// tab through the DevTools protocol's sampling profiler (100 µs). With FRESH_TAB=1, a
// first target writes the plan hint and the page reloads before the profiled one.
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { launchOptions, serve } from "./harness.mjs";

const [wasmPath, target, stubNamespace] = process.argv.slice(2);
if (!wasmPath || !target) {
  console.error("usage: node profile.mjs MODULE.wasm FUNC_NAME [STUB_NAMESPACE]");
  process.exit(2);
}
const pkgDir = process.env.PKG_DIR ?? fileURLToPath(new URL("../../target/bench-browser/pkg/", import.meta.url));
// Several modules (a closure) may be given, separated by commas.
const wasmPaths = wasmPath.split(",");
const server = await serve({ pkgDir, files: wasmPaths, title: "profile" });
const browser = await chromium.launch(launchOptions());
try {
  const page = await browser.newPage();
  await page.goto(server.url);
  await page.evaluate(async (count) => {
    const lc = await import("/pkg/linkcache_web.js");
    await lc.default({ module_or_path: "/pkg/linkcache_web_bg.wasm" });
    window.lc = lc;
    const cache = await lc.LinkCache.open("linkcache-profile", {});
    await cache.clear();
    for (let i = 0; i < count; i++) {
      await cache.addModule(new Uint8Array(await (await fetch(`/wasm/${i}`)).arrayBuffer()));
    }
    cache.close();
  }, wasmPaths.length);
  if (process.env.FRESH_TAB) {
    // A first target in this tab (it writes the plan hint), then a reload: the
    // profile is of a fresh tab's warm target, as the benchmark times it.
    await page.evaluate(async ({ target, stubNamespace }) => {
      const stub = new Proxy({}, { get: () => () => 0 });
      const imports = stubNamespace ? { [stubNamespace]: stub } : {};
      await (await window.lc.LinkCache.open("linkcache-profile", { imports })).target(target);
    }, { target, stubNamespace });
    await page.reload();
    await page.evaluate(async () => {
      const lc = await import("/pkg/linkcache_web.js");
      await lc.default({ module_or_path: "/pkg/linkcache_web_bg.wasm" });
      window.lc = lc;
    });
  }
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Profiler.enable");
  await cdp.send("Profiler.setSamplingInterval", { interval: 100 });
  await cdp.send("Profiler.start");
  const ms = await page.evaluate(async ({ target, stubNamespace }) => {
    const stub = new Proxy({}, { get: () => () => 0 });
    const imports = stubNamespace ? { [stubNamespace]: stub } : {};
    const t = performance.now();
    const cache = await window.lc.LinkCache.open("linkcache-profile", { imports });
    await cache.target(target);
    return performance.now() - t;
  }, { target, stubNamespace });
  const { profile } = await cdp.send("Profiler.stop");
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  let sampled = 0;
  profile.samples.forEach((id, i) => {
    const frame = nodes.get(id).callFrame;
    const name = frame.functionName || `(${frame.url.split("/").pop() || "native"})`;
    const ms = profile.timeDeltas[i] / 1000;
    self.set(name, (self.get(name) ?? 0) + ms);
    sampled += ms;
  });
  console.log(`open + target(${target}): ${ms.toFixed(1)} ms (${sampled.toFixed(1)} ms sampled); self time:`);
  for (const [name, ms] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 20)) {
    console.log(`${ms.toFixed(1).padStart(8)} ms  ${name.slice(0, 120)}`);
  }
} finally {
  await browser.close();
  server.close();
}
