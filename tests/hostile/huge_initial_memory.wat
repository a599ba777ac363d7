;; Hostile guest: declares 4 GiB of initial linear memory.
;; Expected: Error::InvalidModule at load (the load-time instance is capped
;; at 64 MiB); no task ever runs.
(module
  (memory (export "memory") 65536)
  (func (export "sandpool_abi_version") (result i32) (i32.const 1))
  (func (export "sandpool_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "sandpool_run") (param i32 i32) (result i64) (i64.const 0)))
