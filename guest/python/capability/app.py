"""A task that calls a host capability: the Python twin of the Rust guest's
capability example.

Input: a u64. It asks capability `math.double` (declared in
capabilities.txt beside this file; the pool must grant it) for twice the
input, and returns that plus one, as a u64 (all bincode, see sandpool_task).
"""

import sandpool_task as sp


@sp.task(decode=sp.u64, encode=sp.encode_u64)
def run(n: int) -> int:
    doubled = sp.u64(sp.call("math.double", sp.encode_u64(n)))
    return doubled + 1


WitWorld = run.world
