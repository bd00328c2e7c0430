// Medians (min–max) per module and side from bench.mjs's output, ratios to the memory side.
//   node table.mjs out.json [out2.json ...]   (several files: their runs pooled)
import { readFileSync } from "node:fs";

const outs = process.argv.slice(2).map((p) => JSON.parse(readFileSync(p, "utf8")));
const jsFlags = outs[0].jsFlags;
if (outs.some((o) => o.jsFlags !== jsFlags)) throw new Error("files with different V8 flags");
const check = outs.map((o) => o.check);
const results = outs.flatMap((o, k) => o.results.map((r) => ({ ...r, file: k })));
const med = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const f = (x) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
console.log(`V8 flags: ${jsFlags ?? "default"}; traced reads: ${JSON.stringify(check)}\n`);
console.log("| module | side | n | compile | instantiate | first call | total (min–max) | ÷ memory | work after (min–max) | work ÷ memory |");
console.log("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
for (const name of [...new Set(results.map((r) => r.name))]) {
  const rows = results.filter((r) => r.name === name);
  const mem = rows.filter((r) => r.side === "memory");
  const memTotal = med(mem.map((r) => r.total));
  const memWork = med(mem.map((r) => r.work));
  for (const side of [...new Set(rows.map((r) => r.side))]) {
    const rs = rows.filter((r) => r.side === side);
    const t = rs.map((r) => r.total);
    const w = rs.map((r) => r.work);
    console.log(`| ${name} | ${side} | ${rs.length} | ${f(med(rs.map((r) => r.compile)))} | ${f(med(rs.map((r) => r.inst)))} | ${f(med(rs.map((r) => r.call)))} | ${f(med(t))} (${f(Math.min(...t))}–${f(Math.max(...t))}) | ${(med(t) / memTotal).toFixed(2)}× | ${f(med(w))} (${f(Math.min(...w))}–${f(Math.max(...w))}) | ${(med(w) / memWork).toFixed(2)}× |`);
  }
}
