;; Hostile guest: imports a name that is not a WASI preview 1 function, from
;; the WASI module (a newer or made-up host call).
;; Expected: Error::InvalidModule at load; no task ever runs.
(module
  (import "wasi_snapshot_preview1" "sock_open" (func $sock_open (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "sandpool_abi_version") (result i32) (i32.const 1))
  (func (export "sandpool_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "sandpool_run") (param i32 i32) (result i64) (i64.const 0)))
