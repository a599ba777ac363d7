//! Tiny inline-WAT task modules for the runnable examples in the docs:
//! an echo task and a spinning task, so doctests need no built guest.

use serde::{Serialize, de::DeserializeOwned};

use crate::task::Task;

/// Bump allocator and exports shared by both modules.
const PRELUDE: &str = r#"
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (func (export "sandpool_abi_version") (result i32) (i32.const 1))
  (func $reserve (param $len i32) (result i32)
    (local $ptr i32) (local $pages i32)
    (local.set $ptr (global.get $heap))
    (global.set $heap (i32.add (local.get $ptr) (local.get $len)))
    (local.set $pages (i32.shr_u (i32.add (global.get $heap) (i32.const 65535)) (i32.const 16)))
    (if (i32.gt_u (local.get $pages) (memory.size))
      (then (if (i32.eq (memory.grow (i32.sub (local.get $pages) (memory.size))) (i32.const -1))
        (then unreachable))))
    (local.get $ptr))
  (func (export "sandpool_alloc") (param $len i32) (result i32)
    (call $reserve (local.get $len)))
  ;; Output: tag 0 and the input bytes (the value is the input value).
  (func $echo (param $ptr i32) (param $len i32) (result i64)
    (local $out i32)
    (local.set $out (call $reserve (i32.add (local.get $len) (i32.const 1))))
    (i32.store8 (local.get $out) (i32.const 0))
    (memory.copy (i32.add (local.get $out) (i32.const 1)) (local.get $ptr) (local.get $len))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32))
            (i64.extend_i32_u (i32.add (local.get $len) (i32.const 1)))))
"#;

/// A task returning its input unchanged.
///
/// ```
/// let pool = sandpool::Pool::builder(sandpool::doc_tasks::echo::<String>()).build()?;
/// assert_eq!(pool.submit(&"hi".to_string())?.wait()?, "hi");
/// # Ok::<(), sandpool::Error>(())
/// ```
pub fn echo<T: Serialize + DeserializeOwned>() -> Task<T, T> {
    let wat = format!(
        r#"(module {PRELUDE}
  (func (export "sandpool_run") (param $ptr i32) (param $len i32) (result i64)
    (call $echo (local.get $ptr) (local.get $len))))"#
    );
    Task::from_bytes("echo", wat.into_bytes()).expect("the echo WAT is valid")
}

/// A task that spins about `n` × 10 ms (machine-dependent) and returns `n`;
/// `255` spins until its deadline or an abort stops it.
///
/// ```
/// let pool = sandpool::Pool::builder(sandpool::doc_tasks::spin()).build()?;
/// assert_eq!(pool.submit(&1)?.wait()?, 1);
/// # Ok::<(), sandpool::Error>(())
/// ```
pub fn spin() -> Task<u8, u8> {
    let wat = format!(
        r#"(module {PRELUDE}
  (func (export "sandpool_run") (param $ptr i32) (param $len i32) (result i64)
    (local $n i64)
    (local.set $n (i64.mul (i64.load8_u (local.get $ptr)) (i64.const 10000000)))
    (if (i64.eq (local.get $n) (i64.const 2550000000))
      (then (loop $forever (br $forever))))
    (block $done
      (loop $spin
        (br_if $done (i64.eqz (local.get $n)))
        (local.set $n (i64.sub (local.get $n) (i64.const 1)))
        (br $spin)))
    (call $echo (local.get $ptr) (local.get $len))))"#
    );
    Task::from_bytes("spin", wat.into_bytes()).expect("the spin WAT is valid")
}
