// Numbers rounded for people: two significant digits for times and sizes (32 ms, 3.2 ms,
// 0.032 ms; 1.2 KB), thousands separators for counts. The page shows these; the exact
// numbers stay in the raw statistics behind the disclosure.

/** A duration in milliseconds: `32 ms`, `0.41 ms`, `1234 ms`. */
export function formatMs(ms) {
  if (!Number.isFinite(ms)) return "–";
  if (ms >= 100) return `${Math.round(ms).toLocaleString("en-US")} ms`;
  if (ms < 0.001) return "< 0.001 ms";
  return `${twoDigits(ms)} ms`;
}

/** A byte count in decimal units: `512 B`, `1.2 KB`, `3.4 MB`. */
export function formatBytes(bytes) {
  if (!Number.isFinite(bytes)) return "–";
  if (bytes < 1000) return `${Math.round(bytes)} B`;
  if (bytes < 1e6) return `${twoDigitsAtLeastWhole(bytes / 1e3)} KB`;
  return `${twoDigitsAtLeastWhole(bytes / 1e6)} MB`;
}

/** A count: `12`, `1,250`. */
export function formatCount(n) {
  return Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "–";
}

/** `1 module`, `2 modules`. */
export function plural(n, word) {
  return `${formatCount(n)} ${word}${n === 1 ? "" : "s"}`;
}

// 0.0321 -> "0.032", 3.21 -> "3.2", 32.1 -> "32".
function twoDigits(value) {
  return String(Number(value.toPrecision(2)));
}

// 123.4 -> "123" (never "1.2e+2").
function twoDigitsAtLeastWhole(value) {
  return value >= 100 ? String(Math.round(value)) : twoDigits(value);
}
