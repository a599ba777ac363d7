;; Hostile guest: declares a table of ten million elements.
;; Expected: Error::InvalidModule at load (the pooling allocator bounds tables).
(module
  (memory (export "memory") 1)
  (table 10000000 funcref)
  (func (export "sandpool_abi_version") (result i32) (i32.const 1))
  (func (export "sandpool_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "sandpool_run") (param i32 i32) (result i64) (i64.const 0)))
