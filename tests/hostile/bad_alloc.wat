;; Hostile guest: `sandpool_alloc` hands the host a buffer outside linear memory.
;; Expected: Error::Trap naming the returned pointer; the host writes nothing.
(module
  (memory (export "memory") 1)
  (func (export "sandpool_abi_version") (result i32) (i32.const 1))
  (func (export "sandpool_alloc") (param i32) (result i32) (i32.const 0xfffffff0))
  (func (export "sandpool_run") (param i32 i32) (result i64) (i64.const 0)))
