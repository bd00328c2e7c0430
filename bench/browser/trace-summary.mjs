// What one measured target did on the page's main thread, counted from the Chrome
// traces probe.mjs writes with TRACE=PREFIX:
//
//   node trace-summary.mjs 'PREFIX-*.json'
//
// Per trace (its window: from the first to the last of the page's marks): the window's
// length, the main thread's busy time in it (its tasks, clipped to the window; and its CPU
// time, the tasks' thread time: on a loaded machine the main thread is descheduled for
// much of a busy task, so the CPU time is the steadier figure), how many
// tasks ran, how many times the event loop called into JavaScript (`FunctionCall`: a
// promise reaction, an IndexedDB event, a wasm-bindgen closure), the lazily compiled
// functions (`wasm.CompileLazy`: the package's, and the closure's own at the call), their
// bodies' size and their time (and CPU time), the compile jobs finished on the
// main thread (`wasm.FinishAsyncCompile`) and how far apart the first and last were,
// IndexedDB requests issued, and garbage collection on the main thread. Then the
// medians per row and mode. Counts are work, not time: they do not swing with the
// machine's load as the timings do (BENCHMARKS.md, session 26).
import { readFile, readdir } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

const pattern = process.argv[2];
if (!pattern) {
  console.error("usage: node trace-summary.mjs 'PREFIX-*.json'");
  process.exit(2);
}
const files = await expand(pattern);
if (!files.length) {
  console.error(`no trace matches ${pattern}`);
  process.exit(1);
}

const summaries = [];
for (const file of files) {
  const events = JSON.parse(await readFile(file, "utf8"));
  const summary = summarize(events);
  if (!summary) {
    console.log(`${basename(file)}: no marks in the trace`);
    continue;
  }
  summaries.push({ group: basename(file).replace(/-\d+\.json$/, ""), ...summary });
  console.log(`${basename(file)}: ${show(summary)}`);
}
const groups = new Map();
for (const s of summaries) groups.set(s.group, [...(groups.get(s.group) ?? []), s]);
console.log("\nmedians");
for (const [group, rows] of groups) {
  const medians = Object.fromEntries(Object.keys(rows[0]).filter((k) => k !== "group").map((k) => [k, median(rows.map((r) => r[k]))]));
  console.log(`  ${group} (${rows.length}): ${show(medians)}`);
}

function summarize(events) {
  const marks = events.filter((e) => (e.cat ?? "").includes("user_timing") && !["navigationStart", "fetchStart", "responseEnd", "domLoading", "domInteractive", "domContentLoadedEventStart", "domContentLoadedEventEnd", "domComplete", "loadEventStart", "loadEventEnd", "unloadEventStart", "unloadEventEnd", "commitNavigationEnd"].includes(e.name));
  if (!marks.length) return null;
  const { pid, tid } = marks[0];
  const from = Math.min(...marks.map((m) => m.ts));
  const to = Math.max(...marks.map((m) => m.ts));
  const main = events.filter((e) => e.pid === pid && e.tid === tid && e.ph === "X" && e.ts + (e.dur ?? 0) >= from && e.ts <= to);
  const inWindow = (e) => e.ts >= from && e.ts <= to;
  const tasks = main.filter((e) => e.name === "ThreadControllerImpl::RunTask");
  const clipped = (e) => Math.max(0, Math.min(e.ts + e.dur, to) - Math.max(e.ts, from));
  const lazy = main.filter((e) => e.name === "wasm.CompileLazy" && inWindow(e));
  const baseline = main.filter((e) => e.name === "wasm.CompileBaseline" && inWindow(e));
  const finished = main.filter((e) => e.name === "wasm.FinishAsyncCompile" && inWindow(e)).map((e) => e.ts);
  const gc = main.filter((e) => /^V8\.GC|^MinorGC$|^MajorGC$/.test(e.name) && inWindow(e));
  return {
    windowMs: (to - from) / 1000,
    busyMs: tasks.reduce((sum, e) => sum + clipped(e), 0) / 1000,
    // CPU time: a task's thread time, in the share of it the window holds.
    busyCpuMs: tasks.reduce((sum, e) => sum + (e.dur ? ((e.tdur ?? 0) * clipped(e)) / e.dur : 0), 0) / 1000,
    tasks: tasks.filter(inWindow).length,
    calls: main.filter((e) => e.name === "FunctionCall" && inWindow(e)).length,
    lazyCompiles: lazy.length,
    lazyMs: lazy.reduce((sum, e) => sum + e.dur, 0) / 1000,
    lazyCpuMs: lazy.reduce((sum, e) => sum + (e.tdur ?? 0), 0) / 1000,
    lazyKb: baseline.reduce((sum, e) => sum + (e.args?.bodySize ?? 0), 0) / 1000,
    compilesFinished: finished.length,
    finishSpreadMs: finished.length ? (Math.max(...finished) - Math.min(...finished)) / 1000 : 0,
    idbRequests: main.filter((e) => /RequestSetup$/.test(e.name) && inWindow(e)).length,
    gcMs: gc.reduce((sum, e) => sum + e.dur, 0) / 1000,
  };
}

function show(s) {
  const ms = (x) => x.toFixed(2);
  return `window ${ms(s.windowMs)} ms, main busy ${ms(s.busyMs)} ms (CPU ${ms(s.busyCpuMs)}), ${s.tasks} tasks, ${s.calls} calls into JS, ` +
    `${s.lazyCompiles} lazy compiles (${s.lazyKb.toFixed(1)} KB, ${ms(s.lazyMs)} ms, CPU ${ms(s.lazyCpuMs)}), ${s.compilesFinished} compiles finished over ${ms(s.finishSpreadMs)} ms, ` +
    `${s.idbRequests} IndexedDB requests, GC ${ms(s.gcMs)} ms`;
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

// The files a `dir/prefix-*.json` pattern names (one `*`, in the file name only).
async function expand(pattern) {
  const dir = dirname(pattern);
  const [head, tail = ""] = basename(pattern).split("*");
  const names = await readdir(dir).catch(() => []);
  return names.filter((n) => n.startsWith(head) && n.endsWith(tail) && n.length >= head.length + tail.length).sort().map((n) => join(dir, n));
}
