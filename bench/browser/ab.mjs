// Builds of the package side by side: a warm target in a fresh tab with each, and
// compiling the same bytes from memory, paired by round (this machine's speed varies
// several-fold between minutes, so only ratios measured in one round are compared).
//
//   node ab.mjs PROBE.json PKG_A PKG_B [PKG_C ...] [--rounds N]
//
// PROBE is probe.mjs's spec (its pkgDir and profileDir are replaced). Each round runs
// probe.mjs once per package (modes linkcache and memory, one run each, each package on
// its own browser profile), the order rotating by round. Prints, per row: each
// package's linkcache total and memory (medians, min–max), linkcache ÷ memory, and its
// linkcache total ÷ A's, paired by round; then the same for the warm-up before the
// clock (a fresh tab's first `LinkCache.open` and target, of another function: what
// a page pays for the package's code running for the first time). Every round's numbers
// go to results.json in the run's temporary directory (its path is printed).
import { execFile } from "node:child_process";
import { readFile, writeFile, mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const args = process.argv.slice(2);
const roundsAt = args.indexOf("--rounds");
const rounds = roundsAt >= 0 ? Number(args.splice(roundsAt, 2)[1]) : 10;
const [specPath, ...pkgs] = args;
if (!specPath || pkgs.length < 2 || !(rounds > 0)) {
  console.error("usage: node ab.mjs PROBE.json PKG_A PKG_B [PKG_C ...] [--rounds N]");
  process.exit(2);
}
const spec = JSON.parse(await readFile(specPath, "utf8"));
const work = await mkdtemp(join(tmpdir(), "linkcache-ab-"));
const sides = Object.fromEntries(pkgs.map((pkg, i) => [String.fromCharCode(65 + i), pkg]));
const names = Object.keys(sides);
const specs = {};
for (const [side, pkgDir] of Object.entries(sides)) {
  specs[side] = join(work, `${side}.json`);
  const own = { ...spec, pkgDir, profileDir: join(work, `profile-${side}`), runs: 1, modes: ["linkcache", "memory"], json: true };
  await writeFile(specs[side], JSON.stringify(own));
}
const run = promisify(execFile);
const probe = new URL("./probe.mjs", import.meta.url).pathname;
// results[side][row] = [{ linkcache, memory, reads }] by round
const results = Object.fromEntries(names.map((side) => [side, {}]));
for (let round = 0; round < rounds; round++) {
  // Each package goes first in as many rounds as the others: the second browser of a
  // round starts while the first one's processes are still closing.
  const order = [...names.slice(round % names.length), ...names.slice(0, round % names.length)];
  for (const side of order) {
    const { stdout } = await run("node", [probe, specs[side]], { maxBuffer: 64 << 20 });
    const json = JSON.parse(stdout.trim().split("\n").pop());
    for (const [row, byMode] of Object.entries(json)) {
      (results[side][row] ??= []).push({
        linkcache: byMode.linkcache[0].totalMs,
        memory: byMode.memory[0].totalMs,
        reads: byMode.linkcache[0].planReads,
        warmup: byMode.linkcache[0].warmupMs,
      });
    }
  }
  const load = (await readFile("/proc/loadavg", "utf8").catch(() => "")).split(" ").slice(0, 3).join(" ");
  process.stderr.write(`  round ${round + 1}/${rounds} (load ${load})\n`);
}
// Every round's numbers, for pairings other than against A.
const raw = join(work, "results.json");
await writeFile(raw, JSON.stringify({ sides, results }, null, 1));
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };
const show = (xs, digits = 2) => `${median(xs).toFixed(digits)} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})`;
// The paired ratio, and in how many rounds the side was the faster: with ties broken
// evenly, k of n rounds is a sign test (14 or more of 24 is still p > 0.3; 18 of 24 is
// p ≈ 0.02), which the medians alone do not show.
const pairedVsA = (row, r, key) => {
  const ratios = results.A[row].map((a, i) => r[i][key] / a[key]);
  return `${show(ratios)}, faster in ${ratios.filter((x) => x < 1).length} of ${ratios.length} rounds`;
};
console.log(`${names.map((side) => `${side}: ${sides[side]}`).join("\n")}\n${rounds} rounds (each round's numbers: ${raw})`);
for (const row of Object.keys(results.A)) {
  console.log(row);
  for (const side of names) {
    const r = results[side][row];
    const paired = side === "A" ? "" : `, ÷ A paired by round ${pairedVsA(row, r, "linkcache")}`;
    console.log(`  ${side}: linkcache ${show(r.map((x) => x.linkcache))} ms, memory ${show(r.map((x) => x.memory))} ms, ` +
      `linkcache ÷ memory ${show(r.map((x) => x.linkcache / x.memory))}, planReads ${[...new Set(r.map((x) => x.reads))].join("/")}${paired}`);
    const warmPaired = side === "A" ? "" : `, ÷ A paired by round ${pairedVsA(row, r, "warmup")}`;
    console.log(`     warm-up (the tab's first open + target, of another function) ${show(r.map((x) => x.warmup))} ms${warmPaired}`);
  }
}
