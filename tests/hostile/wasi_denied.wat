;; Hostile guest: calls WASI functions that reach for files, sockets,
;; environment and descriptors it was never given, straight through the
;; WASI imports (no libc in between to stop it early).
;; Output (Out = [u8; 16]): the errno of each attempt, in this order:
;;    0 fd_prestat_get(3)                       8 (EBADF: no preopened directory)
;;    1 path_open(3, "etc/passwd")              8
;;    2 path_open(0, "etc/passwd") (stdin)      8
;;    3 path_open(1, "/etc/passwd") (stdout)    8
;;    4 fd_read(3)                              8
;;    5 fd_write(3)                             8
;;    6 path_create_directory(3, "x")           8
;;    7 path_unlink_file(3, "x")                8
;;    8 sock_accept(3)                          8
;;    9 fd_renumber(1, 3)                       8
;;   10 poll_oneoff (sleep)                     52 (ENOSYS)
;;   11 fd_write(1) with an iovec outside memory 21 (EFAULT)
;;   12 environ_sizes_get: the variable count   0
;;   13 args_sizes_get: the argument count      0
;;   14 fd_filestat_get(3)                      8
;;   15 fd_readdir(3)                           8
(module
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $fd_prestat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_create_directory"
    (func $path_create_directory (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_unlink_file"
    (func $path_unlink_file (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_accept" (func $sock_accept (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_renumber" (func $fd_renumber (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_filestat_get" (func $fd_filestat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_readdir" (func $fd_readdir (param i32 i32 i32 i64 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 256) "etc/passwd")
  (data (i32.const 272) "/etc/passwd")
  (func (export "sandpool_abi_version") (result i32) (i32.const 1))
  (func (export "sandpool_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "sandpool_run") (param i32 i32) (result i64)
    ;; An iovec {buf 512, len 16} at 64; scratch results at 128..
    (i32.store (i32.const 64) (i32.const 512))
    (i32.store (i32.const 68) (i32.const 16))
    ;; An iovec pointing past the end of memory at 80.
    (i32.store (i32.const 80) (i32.const 0xfffffff0))
    (i32.store (i32.const 84) (i32.const 64))
    (i32.store8 (i32.const 16) (i32.const 0))
    (i32.store8 (i32.const 17) (call $fd_prestat_get (i32.const 3) (i32.const 128)))
    (i32.store8 (i32.const 18) (call $path_open (i32.const 3) (i32.const 1) (i32.const 256) (i32.const 10)
      (i32.const 0) (i64.const -1) (i64.const -1) (i32.const 0) (i32.const 128)))
    (i32.store8 (i32.const 19) (call $path_open (i32.const 0) (i32.const 1) (i32.const 256) (i32.const 10)
      (i32.const 0) (i64.const -1) (i64.const -1) (i32.const 0) (i32.const 128)))
    (i32.store8 (i32.const 20) (call $path_open (i32.const 1) (i32.const 1) (i32.const 272) (i32.const 11)
      (i32.const 0) (i64.const -1) (i64.const -1) (i32.const 0) (i32.const 128)))
    (i32.store8 (i32.const 21) (call $fd_read (i32.const 3) (i32.const 64) (i32.const 1) (i32.const 128)))
    (i32.store8 (i32.const 22) (call $fd_write (i32.const 3) (i32.const 64) (i32.const 1) (i32.const 128)))
    (i32.store8 (i32.const 23) (call $path_create_directory (i32.const 3) (i32.const 256) (i32.const 3)))
    (i32.store8 (i32.const 24) (call $path_unlink_file (i32.const 3) (i32.const 256) (i32.const 3)))
    (i32.store8 (i32.const 25) (call $sock_accept (i32.const 3) (i32.const 0) (i32.const 128)))
    (i32.store8 (i32.const 26) (call $fd_renumber (i32.const 1) (i32.const 3)))
    (i32.store8 (i32.const 27) (call $poll_oneoff (i32.const 512) (i32.const 600) (i32.const 1) (i32.const 128)))
    (i32.store8 (i32.const 28) (call $fd_write (i32.const 1) (i32.const 80) (i32.const 1) (i32.const 128)))
    (drop (call $environ_sizes_get (i32.const 128) (i32.const 132)))
    (i32.store8 (i32.const 29) (i32.load (i32.const 128)))
    (drop (call $args_sizes_get (i32.const 128) (i32.const 132)))
    (i32.store8 (i32.const 30) (i32.load (i32.const 128)))
    (i32.store8 (i32.const 31) (call $fd_filestat_get (i32.const 3) (i32.const 128)))
    (i32.store8 (i32.const 32) (call $fd_readdir (i32.const 3) (i32.const 512) (i32.const 64) (i64.const 0) (i32.const 128)))
    (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 17))))
