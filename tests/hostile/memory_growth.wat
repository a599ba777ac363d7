;; Hostile guest: grows its linear memory up to the cap and past it.
;; Input: one byte (u8), the mode.
;;   0: grow one page at a time until memory.grow returns -1, then return the
;;      number of pages reached as 4 raw bytes (Out = [u8; 4]): the cap, exactly.
;;   1: the same, but trap when a growth is refused -> Error::MemoryLimit.
;;   2: ask for 4 GiB in one growth; trap when refused -> Error::MemoryLimit.
;;   3: touch every page it got (write one byte per page), then return the
;;      page count like mode 0: the memory is really usable up to the cap.
(module
  (memory (export "memory") 1)
  (func (export "sandpool_abi_version") (result i32) (i32.const 1))
  (func (export "sandpool_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "sandpool_run") (param $ptr i32) (param $len i32) (result i64)
    (local $mode i32) (local $page i32)
    (local.set $mode (i32.load8_u (local.get $ptr)))
    (if (i32.eq (local.get $mode) (i32.const 2))
      (then
        (if (i32.eq (memory.grow (i32.const 65536)) (i32.const -1))
          (then unreachable))))
    (block $refused
      (loop $grow
        (br_if $refused (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
        (br $grow)))
    (if (i32.eq (local.get $mode) (i32.const 1)) (then unreachable))
    (if (i32.eq (local.get $mode) (i32.const 3))
      (then
        (local.set $page (i32.const 1))
        (loop $touch
          (if (i32.lt_u (local.get $page) (memory.size))
            (then
              (i32.store8 (i32.shl (local.get $page) (i32.const 16)) (i32.const 7))
              (local.set $page (i32.add (local.get $page) (i32.const 1)))
              (br $touch))))))
    ;; Output at 16: tag 0, then the page count as 4 little-endian bytes.
    (i32.store8 (i32.const 16) (i32.const 0))
    (i32.store (i32.const 17) (memory.size))
    (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 5))))
