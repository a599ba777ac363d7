;; Hostile guest: declares a capability no pool grants (`host.secret`) and
;; calls it. Expected: refused at load with Error::CapabilityDenied naming
;; `host.secret`; it never runs.
(module
  (@custom "sandpool.capabilities" "host.secret\n")
  (import "sandpool_v1" "call" (func $call (param i32 i32 i32 i32) (result i64)))
  (memory (export "memory") 1)
  (data (i32.const 0) "host.secret")
  (func (export "sandpool_abi_version") (result i32) (i32.const 1))
  (func (export "sandpool_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "sandpool_run") (param i32 i32) (result i64)
    (drop (call $call (i32.const 0) (i32.const 11) (i32.const 64) (i32.const 0)))
    (i64.const 0)))
