// A static server for the e2e pages: `/` is page.html, `/pkg/*` the built npm package.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";

const here = fileURLToPath(new URL(".", import.meta.url));
const types = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm", ".json": "application/json" };

export function serve(routes) {
  const server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
    for (const [prefix, dir] of routes) {
      if (!path.startsWith(prefix)) continue;
      const rest = normalize(path.slice(prefix.length) || "index.html").replace(/^(\.\.[/\\])+/, "");
      try {
        const body = await readFile(join(dir, rest));
        res.writeHead(200, { "content-type": types[extname(rest)] ?? "application/octet-stream" });
        res.end(body);
      } catch {
        res.writeHead(404).end("not found");
      }
      return;
    }
    res.writeHead(404).end("not found");
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

export const e2eDir = here;
export const pkgDir = join(here, "..", "pkg");

// Serves host-web/pkg and this directory, launches Debian's Chromium (never a downloaded
// one) and runs `body({ browser, url })`; exits 1 when it throws.
export async function withBrowser(body) {
  const { chromium } = await import("playwright-core");
  const server = await serve([["/pkg/", pkgDir], ["/", here]]);
  const url = `http://127.0.0.1:${server.address().port}/`;
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  let failed = false;
  try {
    await body({ browser, url });
    // An uncaught error in a page (a callback the package left behind, say) fails the
    // test even when every assertion held.
    assert.deepEqual(pageErrors, [], "uncaught errors in the pages");
  } catch (e) {
    failed = true;
    console.error(e);
  } finally {
    await browser.close();
    server.close();
  }
  process.exitCode = failed ? 1 : 0;
}

/** Uncaught errors of every page opened with `openPage`. */
const pageErrors = [];

// A page of `context` with the package loaded (`LinkCache`, `watToWasm` on window).
export async function openPage(context, url) {
  const page = await context.newPage();
  page.on("pageerror", (e) => {
    pageErrors.push(e.message);
    console.error("page error:", e.message, e.stack);
  });
  await page.goto(url);
  await page.evaluate(() => window.ready);
  return page;
}
