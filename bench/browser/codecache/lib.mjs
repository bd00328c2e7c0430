// Shared by detect.mjs and bench.mjs: a loopback server on a FIXED port (the origin must
// stay the same across processes, since the service worker registration, Cache Storage
// and the code cache are all per origin), and fresh browser processes on a persistent
// profile, launched as bench/browser/harness.mjs does (default flags but those that reach
// for the network).
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { chromium } from "playwright-core";

const here = new URL(".", import.meta.url).pathname;
export const files = { sql: join(here, "www/sql.wasm"), brotli: join(here, "www/brotli.wasm") };
const types = { ".js": "text/javascript", ".wasm": "application/wasm" };

const page = `<!doctype html><meta charset="utf-8"><title>codecache</title>
<script src="/sql-wasm.js"></script>
<script type="module">import init, * as brotli from "/brotli_wasm.js";
window.brotliInit = init; window.brotli = brotli; window.glueReady = true;</script>
<script src="/exp.js"></script><body>codecache</body>`;

export async function serve(port = Number(process.env.PORT ?? 18765)) {
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
      } else if (/^\/[\w.-]+\.js$/.test(path)) {
        body = await readFile(join(here, "www", path.slice(1)));
        type = "text/javascript";
      } else if (path.startsWith("/bytes/")) {
        body = await readFile(files[path.slice(7)]);
        type = "application/octet-stream";
      } else if (path.startsWith("/net/") || path.startsWith("/cnet/")) {
        // A cacheable wasm response, as a site would serve it (the HTTP-cache control).
        const key = path.split("/")[2];
        body = await readFile(files[key.split("-")[0]]);
        type = "application/wasm";
        headers["cache-control"] = "max-age=86400";
        headers["last-modified"] = "Mon, 01 Dec 2025 00:00:00 GMT";
      } else {
        return res.writeHead(404).end();
      }
      res.writeHead(200, { ...headers, "content-type": type });
      res.end(body);
    } catch (e) {
      res.writeHead(500).end(String(e));
    }
  });
  await new Promise((resolve) => server.listen(port, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${port}/`, close: () => server.close() };
}

export function launchOptions(extraArgs = []) {
  return {
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    // HEADFUL=1 (detection only, under xvfb-run): a headed browser, to compare with headless.
    headless: !process.env.HEADFUL,
    args: ["--no-sandbox", ...(process.env.HEADFUL ? [] : ["--headless"]), "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           ...extraArgs],
  };
}

const CATEGORIES = [
  "devtools.timeline", "disabled-by-default-devtools.timeline", "v8.wasm",
  "disabled-by-default-v8.wasm.detailed", "disabled-by-default-v8.wasm.turbofan",
  "ServiceWorker", "CacheStorage",
];

// Runs `body(arg)` in the page of a fresh browser process on `profileDir`. With `trace`,
// records a Chromium trace over the whole session (detection runs only) and returns the
// wasm / cache events in it.
export async function session(profileDir, url, body, arg, { trace = false, echo = false, extraArgs = [] } = {}) {
  const context = await chromium.launchPersistentContext(profileDir, launchOptions(extraArgs));
  try {
    const tab = context.pages()[0] ?? (await context.newPage());
    const errors = [];
    tab.on("pageerror", (e) => errors.push(e.message));
    if (echo) tab.on("console", (m) => process.stderr.write(`    [page] ${m.text()}\n`));
    let cdp;
    if (trace) {
      cdp = await context.newCDPSession(tab);
      await cdp.send("Tracing.start", {
        transferMode: "ReturnAsStream",
        traceConfig: { includedCategories: CATEGORIES, recordMode: "recordUntilFull" },
      });
    }
    await tab.goto(url);
    const result = await tab.evaluate(body, arg);
    let events;
    if (trace) {
      const done = new Promise((r) => cdp.once("Tracing.tracingComplete", r));
      await cdp.send("Tracing.end");
      const { stream } = await done;
      let text = "";
      for (;;) {
        const chunk = await cdp.send("IO.read", { handle: stream, size: 1 << 20 });
        text += chunk.base64Encoded ? Buffer.from(chunk.data, "base64").toString() : chunk.data;
        if (chunk.eof) break;
      }
      await cdp.send("IO.close", { handle: stream });
      const all = JSON.parse(text);
      const list = Array.isArray(all) ? all : all.traceEvents;
      events = list.filter((e) => /wasm|Wasm|CodeCache|CacheStorage|cachedModule|moduleCache/.test(e.name));
    }
    if (errors.length) throw new Error(`page errors: ${errors.join("; ")}`);
    return { result, events };
  } finally {
    await context.close();
  }
}

// Counts of the trace events that matter, with their args for the code-cache ones.
export function summarize(events) {
  const counts = {};
  const detail = [];
  for (const e of events ?? []) {
    counts[e.name] = (counts[e.name] ?? 0) + 1;
    if (/moduleCache|cachedModule|compiledModule|streamFromResponse|Deserializ|Serializ/.test(e.name)) {
      detail.push({ name: e.name, cat: e.cat, args: e.args });
    }
  }
  return { counts, detail };
}
