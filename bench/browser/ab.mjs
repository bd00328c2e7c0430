// Two builds of the package side by side: a warm target in a fresh tab with each, and
// compiling the same bytes from memory, paired by round (this machine's speed varies
// several-fold between minutes, so only ratios measured in one round are compared).
//
//   node ab.mjs PROBE.json PKG_A PKG_B [ROUNDS]
//
// PROBE is probe.mjs's spec (its pkgDir and profileDir are replaced). Each round runs
// probe.mjs once per package (modes linkcache and memory, one run each, each package on
// its own browser profile), the order alternating by round. Prints, per row: each
// side's linkcache total and memory (medians, min–max), linkcache ÷ memory per side,
// and B ÷ A of the linkcache totals paired by round.
import { execFile } from "node:child_process";
import { readFile, writeFile, mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const [specPath, pkgA, pkgB, roundsArg] = process.argv.slice(2);
if (!specPath || !pkgA || !pkgB) {
  console.error("usage: node ab.mjs PROBE.json PKG_A PKG_B [ROUNDS]");
  process.exit(2);
}
const rounds = Number(roundsArg ?? 10);
const spec = JSON.parse(await readFile(specPath, "utf8"));
const work = await mkdtemp(join(tmpdir(), "linkcache-ab-"));
const sides = { A: pkgA, B: pkgB };
const specs = {};
for (const [side, pkgDir] of Object.entries(sides)) {
  specs[side] = join(work, `${side}.json`);
  const own = { ...spec, pkgDir, profileDir: join(work, `profile-${side}`), runs: 1, modes: ["linkcache", "memory"], json: true };
  await writeFile(specs[side], JSON.stringify(own));
}
const run = promisify(execFile);
const probe = new URL("./probe.mjs", import.meta.url).pathname;
// results[side][row] = [{ linkcache, memory, reads }] by round
const results = { A: {}, B: {} };
for (let round = 0; round < rounds; round++) {
  for (const side of round % 2 ? ["B", "A"] : ["A", "B"]) {
    const { stdout } = await run("node", [probe, specs[side]], { maxBuffer: 64 << 20 });
    const json = JSON.parse(stdout.trim().split("\n").pop());
    for (const [row, byMode] of Object.entries(json)) {
      (results[side][row] ??= []).push({
        linkcache: byMode.linkcache[0].totalMs,
        memory: byMode.memory[0].totalMs,
        reads: byMode.linkcache[0].planReads,
      });
    }
  }
  const load = (await readFile("/proc/loadavg", "utf8").catch(() => "")).split(" ").slice(0, 3).join(" ");
  process.stderr.write(`  round ${round + 1}/${rounds} (load ${load})\n`);
}
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };
const show = (xs, digits = 2) => `${median(xs).toFixed(digits)} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})`;
console.log(`A: ${pkgA}\nB: ${pkgB}\n${rounds} rounds`);
for (const row of Object.keys(results.A)) {
  console.log(row);
  for (const side of ["A", "B"]) {
    const r = results[side][row];
    console.log(`  ${side}: linkcache ${show(r.map((x) => x.linkcache))} ms, memory ${show(r.map((x) => x.memory))} ms, ` +
      `linkcache ÷ memory ${show(r.map((x) => x.linkcache / x.memory))}, planReads ${[...new Set(r.map((x) => x.reads))].join("/")}`);
  }
  const paired = results.A[row].map((a, i) => results.B[row][i].linkcache / a.linkcache);
  console.log(`  B ÷ A, linkcache total paired by round: ${show(paired)}`);
}
