//! The physical floor of `sandpool run`: only its file work, no compute.
//! Walk the input folder, then on N threads read each file, write a small
//! temporary file into the output folder and rename it to `{file_id}.json`.
//!
//! Written in Rust with std only, making exactly the syscalls a C program
//! would per file (`openat`, `read` until 0, `close`; `openat` O_CREAT,
//! `write`, `close`; `rename`): no `statx` before reading (`read_to_end`
//! on a `File` would add one), no `fsync` (`sandpool run` makes none). Rust
//! rather than C so that the benchmark needs no C compiler: the cli
//! benchmark compiles main.rs beside this file with `rustc -O` into a
//! small binary (on an empty folder it finishes ~1.5 ms sooner than a
//! child of the benchmark's own 90 MB binary, `perf stat -r 40`), and runs
//! it as `floor IN OUT THREADS`, measured by `wait4` as `sandpool run` and
//! Python are.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Every regular file under `dir`, as paths relative to it (symbolic links
/// are not followed; the entry's own type, from `getdents64`, decides).
pub fn walk(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in std::fs::read_dir(dir.join(&rel))? {
            let entry = entry?;
            let kind = entry.file_type()?;
            let child = rel.join(entry.file_name());
            if kind.is_dir() {
                stack.push(child);
            } else if kind.is_file() {
                files.push(child);
            }
        }
    }
    Ok(files)
}

/// `sandpool run`'s output name for a relative path: `%` as `%25`, `/` as `%2F`.
fn file_id(rel: &Path) -> String {
    let mut id = String::new();
    for c in rel.to_string_lossy().chars() {
        match c {
            '%' => id.push_str("%25"),
            '/' => id.push_str("%2F"),
            c => id.push(c),
        }
    }
    id
}

/// Reads `path` whole into `buf` (reused between files): open, read until 0, close.
fn read_into(path: &Path, buf: &mut Vec<u8>) -> io::Result<usize> {
    let mut file = File::open(path)?;
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize((buf.len() * 2).max(64 << 10), 0);
        }
        match file.read(&mut buf[len..]) {
            Ok(0) => return Ok(len),
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Does the file work of `sandpool run INPUTS -o OUT` on `threads` threads;
/// returns the number of outputs written.
pub fn run(inputs: &Path, out: &Path, threads: usize) -> io::Result<usize> {
    std::fs::create_dir_all(out)?;
    let files = walk(inputs)?;
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|t| {
                let (files, next) = (&files, &next);
                scope.spawn(move || -> io::Result<()> {
                    let mut buf = Vec::new();
                    let mut json = Vec::with_capacity(64);
                    while let Some(rel) = files.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let n = read_into(&inputs.join(rel), &mut buf)?;
                        json.clear();
                        write!(json, "{{\"bytes\":{n}}}")?;
                        let tmp = out.join(format!(".floor-tmp-{t}"));
                        File::create(&tmp)?.write_all(&json)?;
                        std::fs::rename(&tmp, out.join(file_id(rel) + ".json"))?;
                    }
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().expect("floor thread"))
    })?;
    Ok(files.len())
}

/// The child-process entry: `floor IN OUT THREADS` (the arguments after the
/// executable). Returns `None` when the arguments are not a floor run.
pub fn main_if_floor(args: &[String]) -> Option<i32> {
    let [cmd, inputs, out, threads] = args else {
        return None;
    };
    if cmd != "floor" {
        return None;
    }
    let threads = threads.parse().expect("a thread count");
    match run(Path::new(inputs), Path::new(out), threads) {
        Ok(n) => {
            println!("{n}");
            Some(0)
        }
        Err(e) => {
            eprintln!("floor: {e}");
            Some(1)
        }
    }
}
