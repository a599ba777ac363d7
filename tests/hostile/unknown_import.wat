;; Hostile guest: imports a function the host does not provide.
;; Expected: Error::InvalidModule at load ("it imports `env::system`, which
;; sandpool does not provide"); no task ever runs.
(module
  (import "env" "system" (func $system (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "sandpool_abi_version") (result i32) (i32.const 1))
  (func (export "sandpool_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "sandpool_run") (param i32 i32) (result i64)
    (drop (call $system (i32.const 0)))
    (i64.const 0)))
