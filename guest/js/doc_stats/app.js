// Document statistics over one file, the JavaScript twin of guest/examples/doc_stats.rs.
//
// Same definition as sandpool_guest::workloads::doc_stats_of: words are
// maximal runs of alphanumeric characters (Unicode Alphabetic or Numeric,
// Rust's char::is_alphanumeric), lowercased character by character; `top` is
// the ten most frequent, by count descending then word ascending (code point
// order, as Rust compares strings).
import { task, fileInput, jsonValue } from "../sandpool_task.js";
import { ALNUM_RANGES } from "./alnum.js";

// Binary search of the code point in the [first, last] pairs of ALNUM_RANGES
// (componentize-js's engine has no \p{...} regex classes).
function isAlnum(c) {
  const cp = c.codePointAt(0);
  let lo = 0;
  let hi = ALNUM_RANGES.length / 2 - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (cp < ALNUM_RANGES[2 * mid]) hi = mid - 1;
    else if (cp > ALNUM_RANGES[2 * mid + 1]) lo = mid + 1;
    else return true;
  }
  return false;
}

function byCodePoint(a, b) {
  const x = Array.from(a);
  const y = Array.from(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i].codePointAt(0) - y[i].codePointAt(0);
    if (d !== 0) return d;
  }
  return x.length - y.length;
}

export function docStatsOf(text) {
  const counts = new Map();
  let words = 0;
  let word = "";
  let lines = 0;
  for (const c of text + " ") {
    if (isAlnum(c)) {
      word += c.toLowerCase();
    } else {
      if (c === "\n") lines++;
      if (word) {
        counts.set(word, (counts.get(word) || 0) + 1);
        words++;
        word = "";
      }
    }
  }
  const top = [...counts.entries()]
    .sort((a, b) => b[1] - a[1] || byCodePoint(a[0], b[0]))
    .slice(0, 10);
  return {
    bytes: new TextEncoder().encode(text).length,
    lines,
    words,
    unique: counts.size,
    top,
  };
}

export const run = task(fileInput, jsonValue, (file) => docStatsOf(file.text()));
