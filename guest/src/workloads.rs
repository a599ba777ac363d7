//! Reference workloads: the document-statistics and prime-counting functions.
//!
//! The example guests export these functions, and the host's benchmarks call
//! the very same functions natively, so "wasm vs native" compares one body
//! of code compiled two ways. The document statistics follow the definition
//! in the project's design brief so that the Python reference in `benches/`
//! computes identical results.
//!
//! ```
//! use sandpool_guest::workloads::{count_primes, doc_stats_of};
//! assert_eq!(count_primes(10), 4);
//! assert_eq!(doc_stats_of("to be or not to be").unique, 4);
//! ```

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::{FileInput, Json};

/// Statistics of one document (the seed article's NLP-preprocessing step).
///
/// ```
/// let stats = sandpool_guest::workloads::doc_stats_of("b a b\n");
/// assert_eq!((stats.bytes, stats.lines, stats.words, stats.unique), (6, 1, 3, 2));
/// assert_eq!(stats.top, vec![("b".to_string(), 2), ("a".to_string(), 1)]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocStats {
    /// UTF-8 length of the decoded text (after invalid bytes became U+FFFD).
    pub bytes: u64,
    /// Number of `\n` characters.
    pub lines: u64,
    /// Number of words: maximal runs of Unicode alphanumeric characters, lowercased.
    pub words: u64,
    /// Number of distinct words.
    pub unique: u64,
    /// The ten most frequent words as `(word, count)`, by count descending, then word ascending.
    pub top: Vec<(String, u64)>,
}

/// Computes [`DocStats`] of a text.
///
/// ```
/// let s = sandpool_guest::workloads::doc_stats_of("The cat, the HAT.\nthe_end 42");
/// assert_eq!((s.words, s.unique, s.lines), (7, 5, 1));
/// assert_eq!(s.top[0], ("the".to_string(), 3));
/// ```
pub fn doc_stats_of(text: &str) -> DocStats {
    let mut counts: HashMap<String, u64> = HashMap::new();
    let mut words = 0u64;
    let mut word = String::new();
    let mut flush = |word: &mut String, counts: &mut HashMap<String, u64>| {
        if !word.is_empty() {
            words += 1;
            if let Some(n) = counts.get_mut(word.as_str()) {
                *n += 1;
            } else {
                counts.insert(std::mem::take(word), 1);
            }
            word.clear();
        }
    };
    for c in text.chars() {
        if c.is_alphanumeric() {
            word.extend(c.to_lowercase());
        } else {
            flush(&mut word, &mut counts);
        }
    }
    flush(&mut word, &mut counts);
    let unique = counts.len() as u64;
    let mut top: Vec<(String, u64)> = counts.into_iter().collect();
    top.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top.truncate(10);
    DocStats {
        bytes: text.len() as u64,
        lines: text.bytes().filter(|&b| b == b'\n').count() as u64,
        words,
        unique,
        top,
    }
}

/// The `sandpool run` form of [`doc_stats_of`]: a file in, a JSON document out.
///
/// ```
/// use sandpool_guest::{FileInput, workloads::doc_stats};
/// let out = doc_stats(FileInput { name: "a.txt".into(), data: b"a b a".to_vec() }).unwrap();
/// assert_eq!(out.0.top[0], ("a".to_string(), 2));
/// ```
pub fn doc_stats(input: FileInput) -> Result<Json<DocStats>, std::convert::Infallible> {
    Ok(Json(doc_stats_of(&input.text())))
}

/// Counts the primes below `limit` by trial division (pure CPU, no allocation).
///
/// ```
/// assert_eq!(sandpool_guest::workloads::count_primes(100), 25);
/// ```
pub fn count_primes(limit: u64) -> u64 {
    let mut count = 0;
    for n in 2..limit {
        if is_prime(n) {
            count += 1;
        }
    }
    count
}

fn is_prime(n: u64) -> bool {
    if n < 4 {
        return n >= 2;
    }
    if n.is_multiple_of(2) {
        return false;
    }
    let mut d = 3;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

/// The task form of [`count_primes`].
///
/// ```
/// assert_eq!(sandpool_guest::workloads::primes_task(10), Ok(4));
/// ```
pub fn primes_task(limit: u64) -> Result<u64, std::convert::Infallible> {
    Ok(count_primes(limit))
}
