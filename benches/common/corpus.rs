//! The inputs the benchmarks share: `make_doc` (step for step the
//! `make_doc` of benches/python/executors.py) and the folder of small
//! paragraph files `sandpool run` is measured on.

use std::path::Path;

use sandpool::FileInput;

/// The vocabulary of `executors.py`'s `make_doc`.
const DOC_WORDS: [&str; 20] = [
    "the",
    "pool",
    "thread",
    "process",
    "memory",
    "isolation",
    "wasm",
    "instance",
    "task",
    "input",
    "output",
    "order",
    "result",
    "cost",
    "serialize",
    "pickle",
    "crash",
    "limit",
    "deadline",
    "fuel",
];

/// Deterministic document `i` of about `size` bytes: `executors.py`'s
/// `make_doc`, step for step (the levels benchmark checks it against Python).
pub fn make_doc(i: u64, size: usize) -> String {
    let mut x = ((u128::from(i) * 2_654_435_761 + 1) % (1u128 << 32)) as u64;
    let mut words = Vec::new();
    let mut total = 0;
    while total < size {
        x = (x * 1_103_515_245 + 12_345) % (1 << 31);
        let w = DOC_WORDS[(x % DOC_WORDS.len() as u64) as usize];
        words.push(w);
        total += w.len() + 1;
    }
    words.join(" ")
}

/// `n` documents of about `size` bytes as doc_stats inputs (`doc-iiii.txt`).
pub fn documents(n: usize, size: usize) -> Vec<FileInput> {
    (0..n)
        .map(|i| FileInput {
            name: format!("doc-{i:04}.txt"),
            data: make_doc(i as u64, size).into_bytes(),
        })
        .collect()
}

/// The paragraph vocabulary: some words are not ASCII, as real text's are.
const PARAGRAPH_WORDS: &[&str] = &[
    "the",
    "pool",
    "thread",
    "process",
    "memory",
    "isolation",
    "wasm",
    "instance",
    "task",
    "input",
    "output",
    "order",
    "result",
    "cost",
    "serialize",
    "pickle",
    "crash",
    "limit",
    "deadline",
    "fuel",
    "page",
    "café",
    "데이터",
    "처리",
];

/// Writes `files` paragraph files (40 to 119 words, a few hundred bytes)
/// under `dir`, spread over 20 sub-folders as `partNN/doc N.txt`.
pub fn write_paragraph_files(dir: &Path, files: usize) {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..files {
        let sub = dir.join(format!("part{:02}", i % 20));
        if i < 20 {
            std::fs::create_dir_all(&sub).expect("mkdir");
        }
        let mut text = String::new();
        for w in 0..(40 + i % 80) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            text.push_str(PARAGRAPH_WORDS[(x % PARAGRAPH_WORDS.len() as u64) as usize]);
            text.push(if w % 12 == 11 { '\n' } else { ' ' });
        }
        std::fs::write(sub.join(format!("doc {i}.txt")), text).expect("write");
    }
}

/// Writes `files` tiny files (a few words each) under `dir`, 1,000 per
/// sub-folder: the 1M-input memory run.
pub fn write_tiny_files(dir: &Path, files: usize) {
    for i in 0..files {
        let sub = dir.join(format!("d{:04}", i / 1000));
        if i % 1000 == 0 {
            std::fs::create_dir_all(&sub).expect("mkdir");
        }
        std::fs::write(sub.join(format!("{i}.txt")), format!("tiny {i} file\n")).expect("write");
    }
}
