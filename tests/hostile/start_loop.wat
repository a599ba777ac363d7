;; Hostile guest: its start function never returns, so even instantiating
;; it hangs.
;; Expected: Error::InvalidModule at load once the 10 s load-time deadline
;; passes ("cannot instantiate"); no thread is left spinning.
(module
  (memory (export "memory") 1)
  (func $hang (loop $forever (br $forever)))
  (start $hang)
  (func (export "sandpool_abi_version") (result i32) (i32.const 1))
  (func (export "sandpool_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "sandpool_run") (param i32 i32) (result i64) (i64.const 0)))
