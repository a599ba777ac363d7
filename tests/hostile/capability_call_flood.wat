;; Hostile guest: calls a granted capability in an endless loop (a guest
;; hammering a shared session, e.g. a database, as fast as it can).
;; Expected: Error::Capability naming `host.echo` once the task has made
;; Limits::max_calls calls; the handler ran exactly that many times.
(module
  (@custom "sandpool.capabilities" "host.echo\n")
  (import "sandpool_v1" "call" (func $call (param i32 i32 i32 i32) (result i64)))
  (memory (export "memory") 1)
  (data (i32.const 0) "host.echo")
  ;; The request: bincode of an empty byte string.
  (data (i32.const 64) "\00")
  (func (export "sandpool_abi_version") (result i32) (i32.const 1))
  (func (export "sandpool_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "sandpool_run") (param i32 i32) (result i64)
    (loop $forever
      (drop (call $call (i32.const 0) (i32.const 9) (i32.const 64) (i32.const 1)))
      (br $forever))
    (i64.const 0)))
