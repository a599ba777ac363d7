//! The physical floor of `sandpool run`: only its file work, no compute.
//! Walk the input folder, then on N threads read each file, write a small
//! temporary file beside its output and rename it to `OUT/{path}.json` (the
//! output tree mirrors the input tree, as `sandpool run`'s does).
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

/// `sandpool run`'s output for a relative path: the same path under `out`,
/// `.json` appended (the bench corpus has no name that needs escaping).
fn output_path(out: &Path, rel: &Path) -> PathBuf {
    let mut path = out.join(rel).into_os_string();
    path.push(".json");
    PathBuf::from(path)
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
    // The mirrored output folders, made once each (as `sandpool run` does).
    let mut dirs: Vec<&Path> = files.iter().filter_map(|f| f.parent()).collect();
    dirs.sort();
    dirs.dedup();
    for dir in dirs {
        std::fs::create_dir_all(out.join(dir))?;
    }
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
                        let target = output_path(out, rel);
                        let tmp = target.with_file_name(format!(".floor-tmp-{t}"));
                        File::create(&tmp)?.write_all(&json)?;
                        std::fs::rename(&tmp, target)?;
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
