//! `docs/abi.md` stays true: its WAT guest loads and runs through a `Pool`,
//! its C guest compiles (with clang-19) and runs, and its encoding table
//! matches what the boundary's bincode configuration really produces.
#![allow(clippy::unwrap_used)] // test helpers, like the tests, fail loudly

use std::collections::BTreeMap;

use sandpool::{Error, Pool, Task};
use serde::Serialize;

const ABI_DOC: &str = include_str!("../docs/abi.md");

/// The body of the one fenced block of `lang` in `docs/abi.md`.
fn fenced_block(lang: &str) -> &'static str {
    let fence = format!("```{lang}\n");
    let mut blocks = ABI_DOC.match_indices(&fence).map(|(start, _)| {
        let body = &ABI_DOC[start + fence.len()..];
        let end = body
            .find("\n```")
            .unwrap_or_else(|| panic!("unterminated ```{lang} block in docs/abi.md"));
        &body[..=end]
    });
    let block = blocks
        .next()
        .unwrap_or_else(|| panic!("docs/abi.md has no ```{lang} block"));
    assert!(
        blocks.next().is_none(),
        "docs/abi.md has more than one ```{lang} block; only the first would be tested"
    );
    block
}

fn wat_task<In: Serialize, Out: serde::de::DeserializeOwned>() -> Task<In, Out> {
    Task::from_bytes("abi_doc_wat", fenced_block("wat").as_bytes().to_vec())
        .unwrap_or_else(|e| panic!("the WAT example in docs/abi.md does not load: {e}"))
}

#[test]
fn the_wat_example_loads_and_echoes_values_through_a_pool() {
    let pool = Pool::builder(wat_task::<(u32, String), (u32, String)>())
        .workers(2)
        .build()
        .unwrap();
    let inputs: Vec<(u32, String)> = (0..200).map(|i| (i * 1000, format!("item {i}"))).collect();
    let outputs: Vec<(u32, String)> = pool.map(&inputs).map(|r| r.unwrap()).collect();
    assert_eq!(outputs, inputs);
}

#[test]
fn the_wat_example_grows_its_memory_for_a_large_input() {
    let pool = Pool::builder(wat_task::<Vec<u8>, Vec<u8>>())
        .workers(1)
        .build()
        .unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
    assert_eq!(pool.submit(&big).unwrap().wait().unwrap(), big);
}

#[test]
fn the_wat_example_answers_an_empty_input_with_a_guest_error() {
    // `()` encodes to zero bytes.
    let pool = Pool::builder(wat_task::<(), ()>())
        .workers(1)
        .build()
        .unwrap();
    let err = pool.submit(&()).unwrap().wait().unwrap_err();
    assert!(
        matches!(&err, Error::Guest { message, .. } if message == "empty input"),
        "{err}"
    );
}

#[test]
fn the_c_example_compiles_and_counts_words() {
    let wasm = compile_c_example();
    let task: Task<(u64, String), (u64, u32)> = Task::from_bytes("word_count", wasm).unwrap();
    let trailing: Task<(u64, String, u8), (u64, u32)> = task.retype();
    let pool = Pool::builder(task).workers(2).build().unwrap();

    let inputs = vec![
        (7, "to be or not".to_string()),
        (1 << 40, " a\tb\nc ".to_string()),
        (300, "x".repeat(70_000)),
    ];
    let counts: Vec<(u64, u32)> = pool.map(&inputs).map(|r| r.unwrap()).collect();
    assert_eq!(counts, vec![(7, 4), (1 << 40, 3), (300, 1)]);

    let err = pool
        .submit(&(1, String::new()))
        .unwrap()
        .wait()
        .unwrap_err();
    assert!(
        matches!(&err, Error::Guest { message, .. } if message == "empty text"),
        "{err}"
    );

    let pool = Pool::builder(trailing).workers(1).build().unwrap();
    let err = pool
        .submit(&(1, "a".to_string(), 9))
        .unwrap()
        .wait()
        .unwrap_err();
    assert!(
        matches!(&err, Error::InputRejected { reason, .. } if reason == "trailing bytes after the input"),
        "{err}"
    );
}

/// Compiles the ```c block of docs/abi.md the way scripts/build-guests.sh
/// builds C guests. clang-19 is installed by scripts/build-guests.sh, which
/// the test command runs first; without it this test fails rather than skip.
fn compile_c_example() -> Vec<u8> {
    assert!(
        std::process::Command::new("clang-19")
            .arg("--version")
            .output()
            .is_ok(),
        "clang-19 is not installed: run scripts/build-guests.sh first"
    );
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("word_count.c");
    let wasm = dir.path().join("word_count.wasm");
    std::fs::write(&source, fenced_block("c")).unwrap();
    let output = std::process::Command::new("clang-19")
        .args([
            "--target=wasm32-wasi",
            "-O2",
            "-Wall",
            "-Werror",
            "-mexec-model=reactor",
            "--sysroot=/usr",
        ])
        .args([
            "-isystem",
            "/usr/include/wasm32-wasi",
            "-L",
            "/usr/lib/wasm32-wasi",
        ])
        .arg("-fuse-ld=/usr/bin/wasm-ld-19")
        .arg("-o")
        .arg(&wasm)
        .arg(&source)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the C example in docs/abi.md does not compile:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read(&wasm).unwrap()
}

#[derive(Serialize)]
struct Job {
    id: u32,
    name: String,
    done: bool,
}

#[derive(Serialize)]
enum Mode {
    Ok(u64),
    Trap,
    Fail(String),
    Pair { a: u8, b: u8 },
}

/// `value` encodes to `hex`, and the doc shows exactly those bytes as `` `hex` ``.
fn assert_documented<T: Serialize>(value: T, hex: &str) {
    let bytes = sandpool_guest::abi::encode(&value).unwrap();
    let got: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(got.join(" "), hex, "the boundary's encoding changed");
    assert!(
        ABI_DOC.contains(&format!("`{hex}`")),
        "docs/abi.md no longer shows `{hex}`"
    );
}

#[test]
fn the_encoding_examples_in_the_doc_are_what_the_boundary_encodes() {
    assert_documented(7u8, "07");
    assert_documented(255u8, "ff");
    assert_documented(-1i8, "ff");
    assert_documented(250u32, "fa");
    assert_documented(300u32, "fb 2c 01");
    assert_documented(65536u32, "fc 00 00 01 00");
    assert_documented(1u64 << 32, "fd 00 00 00 00 01 00 00 00");
    assert_documented(-1i32, "01");
    assert_documented(-200i64, "fb 8f 01");
    assert_documented(true, "01");
    assert_documented(1.0f64, "00 00 00 00 00 00 f0 3f");
    assert_documented('é', "c3 a9");
    assert_documented("hi", "02 68 69");
    assert_documented(vec![1u32, 300], "02 01 fb 2c 01");
    assert_documented(vec![1u8, 2], "02 01 02");
    assert_documented(serde_bytes::ByteBuf::from(vec![1u8, 2]), "02 01 02");
    assert_documented([1u8, 2, 3], "01 02 03");
    assert_documented(BTreeMap::from([("a", 1u32)]), "01 01 61 01");
    assert_documented((7u32, "ab"), "07 02 61 62");
    assert_documented(Some(5u32), "01 05");
    assert_documented(None::<u32>, "00");
    assert_documented(Err::<u8, String>("e".into()), "01 01 65");
    assert_documented(
        Job {
            id: 1,
            name: "x".into(),
            done: true,
        },
        "01 01 78 01",
    );
    assert_documented(Mode::Ok(3), "00 03");
    assert_documented(Mode::Trap, "01");
    assert_documented(Mode::Fail("no".into()), "02 02 6e 6f");
    assert_documented(Mode::Pair { a: 1, b: 2 }, "03 01 02");
    assert!(sandpool_guest::abi::encode(&()).unwrap().is_empty());
}

#[test]
fn the_decoder_accepts_a_wider_varint_but_not_one_wider_than_the_type() {
    // docs/abi.md: "`FB 05 00` decodes as 5", "`FD …` for a `u32` is an error".
    assert_eq!(
        sandpool_guest::abi::decode::<u32>(&[0xfb, 0x05, 0x00]),
        Ok(5)
    );
    assert!(sandpool_guest::abi::decode::<u32>(&[0xfd, 5, 0, 0, 0, 0, 0, 0, 0]).is_err());
    assert!(sandpool_guest::abi::decode::<u64>(&[0xff]).is_err());
    assert!(sandpool_guest::abi::decode::<bool>(&[2]).is_err());
}
