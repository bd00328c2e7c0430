// What the browser benchmark (bench.mjs) and its probes (probe.mjs, profile.mjs) share:
// a loopback server for the package and the modules, and Debian's Chromium launched
// through playwright-core (no browser download).
import { createServer } from "node:http";
import { readFile, writeFile } from "node:fs/promises";
import { extname, join, normalize } from "node:path";
import { chromium } from "playwright-core";

const types = { ".js": "text/javascript", ".wasm": "application/wasm", ".html": "text/html" };

// Serves, cross-origin isolated (performance.now() at 5 µs instead of 100 µs): `/` a blank
// page titled `title`, `/pkg/…` the package in `pkgDir` (cacheable, as a site would serve
// it), `/wasm/N` the N-th of `files`; nothing else is cached. Returns the server's URL and
// a function that stops it.
export async function serve({ pkgDir, files, title }) {
  const page = `<!doctype html><meta charset="utf-8"><title>${title}</title><body>${title}</body>`;
  const server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url, "http://localhost").pathname);
    const headers = {
      "cross-origin-opener-policy": "same-origin",
      "cross-origin-embedder-policy": "require-corp",
      "cache-control": "no-store",
    };
    try {
      let body;
      let type = "text/html";
      if (path === "/") {
        body = page;
      } else if (path.startsWith("/pkg/")) {
        const file = join(pkgDir, normalize(path.slice(5)).replace(/^(\.\.[/\\])+/, ""));
        body = await readFile(file);
        type = types[extname(file)] ?? "application/octet-stream";
        headers["cache-control"] = "max-age=86400";
      } else if (path.startsWith("/wasm/")) {
        body = await readFile(files[Number(path.slice(6))]);
        type = "application/wasm";
      } else {
        return res.writeHead(404).end();
      }
      res.writeHead(200, { ...headers, "content-type": type });
      res.end(body);
    } catch (e) {
      res.writeHead(500).end(String(e));
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${server.address().port}/`, close: () => server.close() };
}

// Chromium's options: headless, default flags but those that reach for the network
// (this machine has none), and `extraArgs` for experiments.
export function launchOptions(extraArgs = []) {
  return {
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           ...extraArgs],
  };
}

// A function that runs `body(arg)` in a page of a fresh browser (a new process) on the
// persistent profile `profileDir`, at `url`, and returns its result; with
// `clearHttpCache` the HTTP cache is emptied first; with `echoConsole` the page's
// console goes to stderr; with `profile` the CPU profiles the page recorded between
// `console.profile()` and `console.profileEnd()` (sampled every 50 µs) are returned as
// `{ result, profiles }`; with `trace` (a file name) a Chrome trace of the session (the
// categories of `TRACE_CATEGORIES`) is written there, as JSON trace events. A page error
// fails the session.
export function sessions({ profileDir, url, options }) {
  return async function session(body, arg, { clearHttpCache = false, echoConsole = false, profile = false, trace = null } = {}) {
    const context = await chromium.launchPersistentContext(profileDir, options);
    try {
      const tab = context.pages()[0] ?? (await context.newPage());
      const errors = [];
      tab.on("pageerror", (e) => errors.push(e.message));
      if (echoConsole) tab.on("console", (m) => process.stderr.write(`    [page] ${m.text()}\n`));
      if (clearHttpCache) {
        const cdp = await context.newCDPSession(tab);
        await cdp.send("Network.clearBrowserCache");
        await cdp.detach();
      }
      const profiles = [];
      if (profile) {
        const cdp = await context.newCDPSession(tab);
        cdp.on("Profiler.consoleProfileFinished", (e) => profiles.push(e.profile));
        await cdp.send("Profiler.enable");
        await cdp.send("Profiler.setSamplingInterval", { interval: 50 });
      }
      const tracing = trace ? await startTrace(context, tab) : null;
      await tab.goto(url);
      const result = await tab.evaluate(body, arg);
      if (tracing) await writeFile(trace, JSON.stringify(await tracing()));
      if (errors.length) throw new Error(`page errors: ${errors.join("; ")}`);
      return profile ? { result, profiles } : result;
    } finally {
      await context.close();
    }
  };
}

// What a trace records: V8's wasm compile jobs (their background steps and the
// main-thread tasks that finish them), lazy compilation, the main thread's tasks and
// function calls, IndexedDB, garbage collection, and the page's `performance.mark`s.
export const TRACE_CATEGORIES = [
  "v8.wasm", "disabled-by-default-v8.wasm.detailed", "devtools.timeline", "toplevel", "v8",
  "v8.execute", "disabled-by-default-v8.gc", "IndexedDB", "blink.user_timing",
].join(",");

// Starts tracing the browser through the DevTools protocol; returns a function that
// stops it and resolves to the trace events.
async function startTrace(context, tab) {
  const cdp = await context.newCDPSession(tab);
  const events = [];
  cdp.on("Tracing.dataCollected", (e) => events.push(...e.value));
  const complete = new Promise((resolve) => cdp.on("Tracing.tracingComplete", resolve));
  await cdp.send("Tracing.start", { categories: TRACE_CATEGORIES, transferMode: "ReportEvents" });
  return async () => {
    await cdp.send("Tracing.end");
    await complete;
    await cdp.detach();
    return events;
  };
}
