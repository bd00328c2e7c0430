// A static server for the e2e pages: `/` is page.html, `/pkg/*` the built npm package.
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
