;; Hostile guest: unbounded recursion on the wasm (native) stack.
;; Expected: Error::Trap ("call stack exhausted") once the 1 MiB wasm stack
;; limit (wasmtime `max_wasm_stack`) is reached; the host thread's own stack
;; is never overrun.
(module
  (memory (export "memory") 1)
  (func $down (param $depth i64) (result i64)
    (i64.add (call $down (i64.add (local.get $depth) (i64.const 1)))
             (local.get $depth)))
  (func (export "sandpool_abi_version") (result i32) (i32.const 1))
  (func (export "sandpool_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "sandpool_run") (param i32 i32) (result i64)
    (call $down (i64.const 0))))
