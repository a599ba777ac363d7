;; Hostile guest: returns every kind of malformed output. Out = String.
;; Input: one byte (u8), the mode; the result is (out_ptr << 32) | out_len.
;;   0: out_len = 0xffffffff (4 GiB)                  -> Error::OutputTooLarge
;;   1: out_ptr = 0xffff0000, 16 bytes, past memory   -> Error::Decode (outside linear memory)
;;   2: out_ptr = 0xffffff00, out_len = 0x1000:
;;      ptr + len is past 4 GiB                       -> Error::Decode (outside linear memory)
;;   3: out_len = 0                                   -> Error::Decode (empty output)
;;   4: unknown tag 7                                 -> Error::Decode (unknown result tag)
;;   5: tag 0, then 0xff (not a bincode length)       -> Error::Decode
;;   6: tag 0, a length of 5 and only 1 byte          -> Error::Decode
;;   7: tag 0, a string that is not UTF-8             -> Error::Decode
;;   8: tag 0, a valid string then trailing garbage   -> Error::Decode (trailing bytes)
;;   9: tag 0, a length claiming 2^40 bytes           -> Error::Decode, nothing allocated
;;  10: tag 1, a message that is not UTF-8            -> Error::Guest, U+FFFD in the message
;;  11: tag 1, a 1 MiB message                        -> Error::Guest, message cut to 64 KiB
;;  12: tag 0, a valid string "ok"                    -> Ok("ok") (the control case)
(module
  (memory (export "memory") 20)
  (data (i32.const 100) "\07garbage")
  (data (i32.const 200) "\00\ff")
  (data (i32.const 300) "\00\05a")
  (data (i32.const 400) "\00\02\c3\28")
  (data (i32.const 500) "\00\01aGARBAGE")
  (data (i32.const 600) "\00\fd\00\00\00\00\00\01\00\00")
  (data (i32.const 700) "\01bad \ff\fe message")
  (data (i32.const 800) "\00\02ok")
  (func $packed (param $ptr i32) (param $len i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32))
            (i64.extend_i32_u (local.get $len))))
  (func (export "sandpool_abi_version") (result i32) (i32.const 1))
  (func (export "sandpool_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "sandpool_run") (param $ptr i32) (param $len i32) (result i64)
    (local $mode i32)
    (local.set $mode (i32.load8_u (local.get $ptr)))
    (block $b12 (block $b11 (block $b10 (block $b9 (block $b8 (block $b7 (block $b6
    (block $b5 (block $b4 (block $b3 (block $b2 (block $b1 (block $b0
      (br_table $b0 $b1 $b2 $b3 $b4 $b5 $b6 $b7 $b8 $b9 $b10 $b11 $b12 (local.get $mode)))
      (return (call $packed (i32.const 100) (i32.const -1))))
      (return (call $packed (i32.const 0xffff0000) (i32.const 16))))
      (return (call $packed (i32.const 0xffffff00) (i32.const 0x1000))))
      (return (call $packed (i32.const 100) (i32.const 0))))
      (return (call $packed (i32.const 100) (i32.const 8))))
      (return (call $packed (i32.const 200) (i32.const 2))))
      (return (call $packed (i32.const 300) (i32.const 3))))
      (return (call $packed (i32.const 400) (i32.const 4))))
      (return (call $packed (i32.const 500) (i32.const 10))))
      (return (call $packed (i32.const 600) (i32.const 10))))
      (return (call $packed (i32.const 700) (i32.const 19))))
      ;; Mode 11: tag 1 then 1 MiB of 'x' at 65536.
      (i32.store8 (i32.const 65536) (i32.const 1))
      (memory.fill (i32.const 65537) (i32.const 0x78) (i32.const 0x100000))
      (return (call $packed (i32.const 65536) (i32.const 0x100001))))
    (call $packed (i32.const 800) (i32.const 4))))
