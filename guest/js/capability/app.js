// A task that calls a host capability: the JavaScript twin of
// guest/python/capability/app.py.
//
// Input: a u64. It asks capability `math.double` (declared in
// capabilities.txt beside this file; the pool must grant it) for twice the
// input, and returns that plus one, as a u64 (all bincode, see
// sandpool_task.js). The value is a BigInt, so every u64 crosses exactly.
import { task, bigU64, encodeBigU64, call } from "../sandpool_task.js";

export const run = task(bigU64, encodeBigU64, (n) => {
  const doubled = bigU64(call("math.double", encodeBigU64(n)));
  return doubled + 1n;
});
