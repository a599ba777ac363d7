// The JavaScript side of a sandpool component task: the boundary encoding.
//
// A sandpool task receives its input and returns its output as bincode 2
// (standard config) bytes, the same bytes an ABI v1 module sees
// (docs/abi.md): integers are variable-length (below 251: one byte;
// 251/252/253 then a little-endian u16/u32/u64), strings and byte strings
// are a length then the bytes, a struct is its fields in order. This module
// reads and writes that, and `task` turns a plain function into the
// component's `run` export:
//
//   import { task, fileInput, jsonValue } from "../sandpool_task.js";
//   export const run = task(fileInput, jsonValue, (file) => ({ bytes: file.data.length }));
//
// A thrown exception becomes the task's failure message (sandpool's
// Error::Guest); bad input bytes become one that names the problem.
// scripts/build-components.sh inlines this file into each task (componentize-js
// takes one source file).
//
// Besides JSON, a task run by `sandpool run` may return raw bytes (encode
// with `rawOutput`, the function returning `[ext, data]`) or named files
// (`filesOutput`, the function returning `{ name: data }`): docs/abi.md,
// "Output kinds". `bigU64` / `encodeBigU64` read and write a u64 as a BigInt
// (`u64` / `encodeU64` use a Number, exact below 2^53). `call(name, request)`
// calls a host capability the component declares (capabilities.txt beside
// its app.js, one name a line) and the pool grants; any failure fails the
// task on the host's side.

import { call as capabilityCall } from "sandpool:task/capabilities@0.1.0";

export class InputError extends Error {}

export class Reader {
  constructor(bytes) {
    this.bytes = bytes;
    this.pos = 0;
  }
  take(n) {
    if (n > this.bytes.length - this.pos) {
      throw new InputError(`input ends at byte ${this.bytes.length}, ${n} more bytes wanted at ${this.pos}`);
    }
    const piece = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return piece;
  }
  // A variable-length unsigned integer, as a Number (exact below 2^53) .
  u64() {
    const first = this.take(1)[0];
    if (first < 251) return first;
    const width = { 251: 2, 252: 4, 253: 8 }[first];
    if (width === undefined) throw new InputError(`invalid integer tag ${first} at byte ${this.pos - 1}`);
    const b = this.take(width);
    let n = 0;
    for (let i = width - 1; i >= 0; i--) n = n * 256 + b[i];
    if (!Number.isSafeInteger(n)) throw new InputError(`integer ${n} is past 2^53`);
    return n;
  }
  // A variable-length unsigned integer, as a BigInt (every u64 exactly).
  bigU64() {
    const first = this.take(1)[0];
    if (first < 251) return BigInt(first);
    const width = { 251: 2, 252: 4, 253: 8 }[first];
    if (width === undefined) throw new InputError(`invalid integer tag ${first} at byte ${this.pos - 1}`);
    const b = this.take(width);
    let n = 0n;
    for (let i = width - 1; i >= 0; i--) n = n * 256n + BigInt(b[i]);
    return n;
  }
  bytesValue() {
    return this.take(this.u64());
  }
  // A length-prefixed UTF-8 string.
  str() {
    const bytes = this.bytesValue();
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch {
      throw new InputError("a string is not valid UTF-8");
    }
  }
  end() {
    if (this.pos !== this.bytes.length) {
      throw new InputError(`${this.bytes.length - this.pos} trailing bytes after the input value`);
    }
  }
}

export class Writer {
  constructor() {
    this.parts = [];
    this.length = 0;
  }
  push(bytes) {
    this.parts.push(bytes);
    this.length += bytes.length;
    return this;
  }
  u64(n) {
    if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`${n} is not a u64 below 2^53`);
    if (n < 251) return this.push(Uint8Array.of(n));
    const width = n < 2 ** 16 ? 2 : n < 2 ** 32 ? 4 : 8;
    const out = new Uint8Array(width + 1);
    out[0] = { 2: 251, 4: 252, 8: 253 }[width];
    for (let i = 1, v = n; i <= width; i++, v = Math.floor(v / 256)) out[i] = v % 256;
    return this.push(out);
  }
  // A BigInt (or Number) u64, any value below 2^64.
  bigU64(value) {
    const n = BigInt(value);
    if (n < 0n || n >= 2n ** 64n) throw new RangeError(`${n} is not a u64`);
    if (n < 251n) return this.push(Uint8Array.of(Number(n)));
    const width = n < 2n ** 16n ? 2 : n < 2n ** 32n ? 4 : 8;
    const out = new Uint8Array(width + 1);
    out[0] = { 2: 251, 4: 252, 8: 253 }[width];
    for (let i = 1, v = n; i <= width; i++, v /= 256n) out[i] = Number(v % 256n);
    return this.push(out);
  }
  bytesValue(bytes) {
    return this.u64(bytes.length).push(bytes);
  }
  str(s) {
    return this.bytesValue(new TextEncoder().encode(s));
  }
  finish() {
    const out = new Uint8Array(this.length);
    let at = 0;
    for (const p of this.parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }
}

// Decodes a FileInput { name: String, data: bytes }; `text()` decodes the data
// as UTF-8 with invalid sequences replaced by U+FFFD (as in Rust).
export function fileInput(bytes) {
  const r = new Reader(bytes);
  const name = r.str();
  const data = r.bytesValue();
  r.end();
  return { name, data, text: () => new TextDecoder("utf-8").decode(data) };
}

// Decodes a u64 input.
export function u64(bytes) {
  const r = new Reader(bytes);
  const n = r.u64();
  r.end();
  return n;
}

// Encodes an output for the host's Json<T>: a string holding compact JSON.
export function jsonValue(value) {
  return new Writer().str(JSON.stringify(value)).finish();
}

// Encodes a u64 output.
export function encodeU64(n) {
  return new Writer().u64(n).finish();
}

// Decodes a u64 input as a BigInt: every u64, not only those below 2^53.
export function bigU64(bytes) {
  const r = new Reader(bytes);
  const n = r.bigU64();
  r.end();
  return n;
}

// Encodes a BigInt (or Number) as a u64 output, any value below 2^64.
export function encodeBigU64(n) {
  return new Writer().bigU64(n).finish();
}

// Encodes [ext, data]: `sandpool run` writes `data` to `{id}.{ext}` as is.
export function rawOutput([ext, data]) {
  const body = new Writer().str(ext).bytesValue(data).finish();
  const out = new Uint8Array(body.length + 2);
  out.set([0xff, 0x01]);
  out.set(body, 2);
  return out;
}

// Encodes { name: data }: `sandpool run` writes the folder `{id}.files/` whole.
export function filesOutput(files) {
  const names = Object.keys(files);
  const w = new Writer().u64(names.length);
  for (const name of names) w.str(name).bytesValue(files[name]);
  const body = w.finish();
  const out = new Uint8Array(body.length + 2);
  out.set([0xff, 0x02]);
  out.set(body, 2);
  return out;
}

// Calls host capability `name` on `request` (encoded bytes); returns the
// encoded response.
export function call(name, request) {
  return capabilityCall(name, request);
}

// The component's `run`: decode, call `fn`, encode; a thrown error becomes
// the task's failure message (componentize-js maps a throw to `err`).
export function task(decode, encode, fn) {
  return (input) => {
    let value;
    try {
      value = decode(input);
    } catch (e) {
      throw `cannot decode the input: ${e && e.message ? e.message : e}`;
    }
    try {
      return encode(fn(value));
    } catch (e) {
      throw e && e.stack ? `${e}\n${e.stack}` : `${e}`;
    }
  };
}
