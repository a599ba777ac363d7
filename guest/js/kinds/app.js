// The three output kinds of `sandpool run` from JavaScript (docs/abi.md,
// "Output kinds"): the twin of guest/python/kinds/app.py.
//
// Input: a file (sandpool run's FileInput). By the file's name:
//   *.raw    -> raw bytes: the text upper-cased, written to `{id}.txt`
//   *.many   -> named files: `lines.txt` (one line count) and `first.txt`
//               (the first line), written to the folder `{id}.files/`
//   anything else -> JSON: {"bytes": N}
import { task, fileInput, jsonValue, rawOutput, filesOutput } from "../sandpool_task.js";

function encode([kind, payload]) {
  if (kind === "raw") return rawOutput(payload);
  if (kind === "files") return filesOutput(payload);
  return jsonValue(payload);
}

export const run = task(fileInput, encode, (file) => {
  const text = file.text();
  const utf8 = (s) => new TextEncoder().encode(s);
  if (file.name.endsWith(".raw")) {
    return ["raw", ["txt", utf8(text.toUpperCase())]];
  }
  if (file.name.endsWith(".many")) {
    const first = text.split("\n", 1)[0];
    const lines = text.split("\n").length - 1;
    return ["files", { "lines.txt": utf8(String(lines)), "first.txt": utf8(first) }];
  }
  return ["json", { bytes: file.data.length }];
});
