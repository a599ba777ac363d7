;; Hostile guest: reads the WASI clocks in a tight loop, forever (a guest
;; probing for timing side channels, or just burning host calls).
;; Expected: Error::Timeout at the deadline: host calls do not hide the
;; guest from epoch interruption.
(module
  (import "wasi_snapshot_preview1" "clock_time_get"
    (func $clock_time_get (param i32 i64 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "sandpool_abi_version") (result i32) (i32.const 1))
  (func (export "sandpool_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "sandpool_run") (param i32 i32) (result i64)
    (loop $forever
      (drop (call $clock_time_get (i32.const 0) (i64.const 1) (i32.const 64)))
      (drop (call $clock_time_get (i32.const 1) (i64.const 1) (i32.const 72)))
      (br $forever))
    (i64.const 0)))
