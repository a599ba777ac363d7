;; Hostile guest: misuses `call_result`, as its one input byte says:
;;   0: fetches the response into a buffer past the end of linear memory;
;;   1: fetches it into a buffer one byte too small;
;;   2: fetches a response when none waits (no call made).
;; Expected: 0 fails the task with Error::Capability ("outside linear
;; memory"); 1 and 2 return the status (-2, -1) as a little-endian i32.
(module
  (@custom "sandpool.capabilities" "host.echo\n")
  (import "sandpool_v1" "call" (func $call (param i32 i32 i32 i32) (result i64)))
  (import "sandpool_v1" "call_result" (func $result (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "host.echo")
  ;; The request: bincode of the byte string "abc".
  (data (i32.const 32) "\03abc")
  (func (export "sandpool_abi_version") (result i32) (i32.const 1))
  (func (export "sandpool_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "sandpool_run") (param $ptr i32) (param $len i32) (result i64)
    (local $mode i32)
    (local $n i32)
    (local.set $mode (i32.load8_u (local.get $ptr)))
    (if (i32.ne (local.get $mode) (i32.const 2))
      (then
        (local.set $n (i32.wrap_i64
          (call $call (i32.const 0) (i32.const 9) (i32.const 32) (i32.const 4))))))
    (if (i32.eqz (local.get $mode))
      (then (drop (call $result (i32.const 0xfffffff0) (local.get $n)))))
    (i32.store (i32.const 513)
      (call $result (i32.const 2048) (i32.sub (local.get $n) (i32.const 1))))
    (i32.store8 (i32.const 512) (i32.const 0))
    (i64.or (i64.shl (i64.const 512) (i64.const 32)) (i64.const 5))))
