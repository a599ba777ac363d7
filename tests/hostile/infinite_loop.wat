;; Hostile guest: `sandpool_run` never returns.
;; Expected: Error::Timeout at the task's deadline (epoch interruption), or
;; Error::FuelExhausted on a fuel-metered pool; the worker is free afterwards.
(module
  (memory (export "memory") 1)
  (func (export "sandpool_abi_version") (result i32) (i32.const 1))
  (func (export "sandpool_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "sandpool_run") (param i32 i32) (result i64)
    (loop $forever (br $forever))
    (i64.const 0)))
