;; Hostile guest: writes 4 GiB to stdout and 4 GiB to stderr (4096 writes
;; of 1 MiB each), then succeeds with Out = ().
;; Expected: success; each captured stream keeps only its first
;; `Limits::max_log` bytes and counts the rest in `CapturedStream::dropped`.
;; The host never buffers more than `max_log` per stream.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 18)
  (func (export "sandpool_abi_version") (result i32) (i32.const 1))
  (func (export "sandpool_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "sandpool_run") (param i32 i32) (result i64)
    (local $i i32)
    ;; 1 MiB of 'y' at 65536, one iovec {65536, 1 MiB} at 32.
    (memory.fill (i32.const 65536) (i32.const 0x79) (i32.const 0x100000))
    (i32.store (i32.const 32) (i32.const 65536))
    (i32.store (i32.const 36) (i32.const 0x100000))
    (loop $write
      (if (call $fd_write (i32.const 1) (i32.const 32) (i32.const 1) (i32.const 48))
        (then unreachable))
      (if (call $fd_write (i32.const 2) (i32.const 32) (i32.const 1) (i32.const 48))
        (then unreachable))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $write (i32.lt_u (local.get $i) (i32.const 4096))))
    ;; Output: just tag 0 (Out = ()).
    (i32.store8 (i32.const 16) (i32.const 0))
    (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 1))))
