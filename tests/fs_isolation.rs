//! Filesystem isolation: by default a guest reaches no host file at all; a
//! pool can grant exactly one directory, read-only or read-write, and
//! nothing outside it is reachable, whatever path or link the guest tries.
//!
//! The guest is `guest/examples/wasi_probe.rs`: it uses Rust's `std::fs`
//! (through wasi-libc, as a real guest would) and, for `RawOpen`, WASI's
//! `path_open` directly, so the host's checks are tested even for paths
//! libc would refuse by itself.
#![allow(clippy::unwrap_used)] // test helpers, like the tests, fail loudly

mod common;

use std::path::{Path, PathBuf};

use sandpool::{DirAccess, Error, ErrorKind, Isolation, Pool, PoolBuilder, Task};
use serde::{Deserialize, Serialize};

#[derive(Serialize)]
#[allow(dead_code)]
enum Probe {
    Read(String),
    Write(String, Vec<u8>),
    Append(String, Vec<u8>),
    List(String),
    Mkdir(String),
    Remove(String),
    RemoveDir(String),
    Rename(String, String),
    Stat(String),
    Env,
    Args,
    Preopens,
    RawOpen {
        dirfd: u32,
        path: String,
        write: bool,
    },
    OpenMany {
        path: String,
        count: u32,
    },
    ReadAt {
        path: String,
        offset: u64,
    },
}

#[derive(Deserialize, Debug, PartialEq, Eq)]
enum Answer {
    Bytes(Vec<u8>),
    Names(Vec<String>),
    Done,
    Stat { size: u64, dir: bool },
    Vars(Vec<(String, String)>),
    Preopens(Vec<(u32, String)>),
    Raw { errno: u16, head: Vec<u8> },
    Opened(u32),
}

/// WASI errno values the host returns.
const EBADF: u16 = 8;
const EROFS: u16 = 69;
const ENOTCAPABLE: u16 = 76;

fn task() -> Task<Probe, Answer> {
    Task::from_file(common::guest("wasi_probe")).expect("wasi_probe guest loads")
}

fn builder() -> PoolBuilder<Probe, Answer> {
    Pool::builder(task()).workers(1)
}

fn run(pool: &Pool<Probe, Answer>, probe: Probe) -> Result<Answer, Error> {
    pool.submit(&probe).expect("submit").wait()
}

/// The guest's own error for a failed operation (it returns `Err(message)`).
fn denied(result: Result<Answer, Error>, what: &str) -> String {
    match result {
        Err(Error::Guest { message, .. }) => message,
        other => panic!("{what}: expected the guest to be refused, got {other:?}"),
    }
}

fn raw_errno(pool: &Pool<Probe, Answer>, dirfd: u32, path: &str, write: bool) -> u16 {
    let probe = Probe::RawOpen {
        dirfd,
        path: path.into(),
        write,
    };
    match run(pool, probe) {
        Ok(Answer::Raw { errno, .. }) => errno,
        other => panic!("raw open of {path}: {other:?}"),
    }
}

/// A snapshot of every file under `dir` (path and bytes), to prove nothing changed.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("test fixture") {
            let entry = entry.expect("test fixture");
            let kind = entry.file_type().expect("test fixture");
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                out.push((
                    entry.path(),
                    std::fs::read(entry.path()).expect("test fixture"),
                ));
            } else {
                out.push((entry.path(), Vec::new()));
            }
        }
    }
    out.sort();
    out
}

/// outer/secret.txt, and the directory to grant, outer/granted/, holding
/// inside.txt, sub/deep.txt and links: one that stays inside, and three
/// that lead out (relative file, absolute file, relative directory).
fn layout() -> (tempfile::TempDir, PathBuf) {
    let outer = tempfile::tempdir().expect("test fixture");
    std::fs::write(outer.path().join("secret.txt"), b"host secret").expect("test fixture");
    let granted = outer.path().join("granted");
    std::fs::create_dir_all(granted.join("sub")).expect("test fixture");
    std::fs::write(granted.join("inside.txt"), b"hello from the grant").expect("test fixture");
    std::fs::write(granted.join("sub/deep.txt"), b"deep").expect("test fixture");
    std::os::unix::fs::symlink("inside.txt", granted.join("ok_link")).expect("test fixture");
    std::os::unix::fs::symlink("../secret.txt", granted.join("link_out")).expect("test fixture");
    std::os::unix::fs::symlink(outer.path().join("secret.txt"), granted.join("abs_link"))
        .expect("test fixture");
    std::os::unix::fs::symlink("..", granted.join("dir_link")).expect("test fixture");
    (outer, granted)
}

#[test]
fn by_default_a_guest_has_no_preopened_directory_environment_or_arguments() {
    let pool = builder().build().unwrap();
    assert_eq!(
        run(&pool, Probe::Preopens).unwrap(),
        Answer::Preopens(vec![])
    );
    assert!(
        std::env::vars().next().is_some(),
        "the host has an environment"
    );
    assert_eq!(run(&pool, Probe::Env).unwrap(), Answer::Vars(vec![]));
    assert_eq!(run(&pool, Probe::Args).unwrap(), Answer::Names(vec![]));
}

#[test]
fn by_default_a_guest_cannot_read_or_write_any_host_file() {
    let (outer, granted) = layout();
    let before = snapshot(outer.path());
    let pool = builder().build().unwrap();
    let secret = outer.path().join("secret.txt").display().to_string();
    let here = granted.display().to_string();
    for path in [
        secret.as_str(),
        "/etc/passwd",
        "/proc/self/environ",
        "secret.txt",
        "./Cargo.toml",
    ] {
        denied(run(&pool, Probe::Read(path.into())), path);
        denied(run(&pool, Probe::Stat(path.into())), path);
    }
    for dir in ["/", ".", "/tmp", here.as_str()] {
        denied(run(&pool, Probe::List(dir.into())), dir);
    }
    let new_file = format!("{here}/new.txt");
    denied(
        run(&pool, Probe::Write(new_file.clone(), b"x".to_vec())),
        "write",
    );
    denied(
        run(&pool, Probe::Append(secret.clone(), b"x".to_vec())),
        "append",
    );
    denied(run(&pool, Probe::Mkdir(format!("{here}/d"))), "mkdir");
    denied(run(&pool, Probe::Remove(secret.clone())), "remove");
    denied(
        run(&pool, Probe::Rename(secret.clone(), new_file.clone())),
        "rename",
    );
    // Straight to WASI: there is no descriptor to resolve a path from.
    for dirfd in [0, 1, 2, 3, 4, 100] {
        assert_eq!(raw_errno(&pool, dirfd, "etc/passwd", false), EBADF);
        assert_eq!(raw_errno(&pool, dirfd, "/etc/passwd", false), EBADF);
        assert_eq!(raw_errno(&pool, dirfd, "x.txt", true), EBADF);
    }
    assert_eq!(
        snapshot(outer.path()),
        before,
        "the host's files are untouched"
    );
}

#[test]
fn a_read_only_grant_exposes_its_directory_and_refuses_every_change() {
    let (outer, granted) = layout();
    let before = snapshot(outer.path());
    let pool = builder()
        .grant_dir(&granted, "/data", DirAccess::ReadOnly)
        .build()
        .unwrap();
    assert_eq!(
        run(&pool, Probe::Preopens).unwrap(),
        Answer::Preopens(vec![(3, "/data".into())])
    );
    assert_eq!(
        run(&pool, Probe::Read("/data/inside.txt".into())).unwrap(),
        Answer::Bytes(b"hello from the grant".to_vec())
    );
    assert_eq!(
        run(&pool, Probe::Read("/data/sub/deep.txt".into())).unwrap(),
        Answer::Bytes(b"deep".to_vec())
    );
    assert_eq!(
        run(&pool, Probe::Read("/data/sub/../inside.txt".into())).unwrap(),
        Answer::Bytes(b"hello from the grant".to_vec()),
        "`..` that stays inside the grant is fine"
    );
    assert_eq!(
        run(&pool, Probe::Read("/data/ok_link".into())).unwrap(),
        Answer::Bytes(b"hello from the grant".to_vec()),
        "a link that stays inside the grant is followed"
    );
    assert_eq!(
        run(
            &pool,
            Probe::ReadAt {
                path: "/data/inside.txt".into(),
                offset: 11
            }
        )
        .unwrap(),
        Answer::Bytes(b"the grant".to_vec())
    );
    assert_eq!(
        run(&pool, Probe::Stat("/data/inside.txt".into())).unwrap(),
        Answer::Stat {
            size: 20,
            dir: false
        }
    );
    assert_eq!(
        run(&pool, Probe::Stat("/data/sub".into())).unwrap(),
        Answer::Stat {
            size: std::fs::metadata(granted.join("sub")).unwrap().len(),
            dir: true
        }
    );
    let Answer::Names(names) = run(&pool, Probe::List("/data".into())).unwrap() else {
        panic!("a listing")
    };
    for name in ["inside.txt", "sub", "ok_link", "link_out"] {
        assert!(names.contains(&name.to_string()), "{name} in {names:?}");
    }

    // Every change is refused.
    let message = denied(
        run(&pool, Probe::Write("/data/new.txt".into(), b"x".to_vec())),
        "create",
    );
    assert!(message.contains("ReadOnlyFilesystem"), "{message}");
    denied(
        run(
            &pool,
            Probe::Write("/data/inside.txt".into(), b"x".to_vec()),
        ),
        "overwrite",
    );
    denied(
        run(
            &pool,
            Probe::Append("/data/inside.txt".into(), b"x".to_vec()),
        ),
        "append",
    );
    denied(run(&pool, Probe::Mkdir("/data/d".into())), "mkdir");
    denied(
        run(&pool, Probe::Remove("/data/inside.txt".into())),
        "remove",
    );
    denied(run(&pool, Probe::RemoveDir("/data/sub".into())), "rmdir");
    denied(
        run(
            &pool,
            Probe::Rename("/data/inside.txt".into(), "/data/moved.txt".into()),
        ),
        "rename",
    );
    assert_eq!(raw_errno(&pool, 3, "inside.txt", true), EROFS);
    assert_eq!(raw_errno(&pool, 3, "brand_new.txt", true), EROFS);
    assert_eq!(
        snapshot(outer.path()),
        before,
        "nothing changed on the host"
    );
}

#[test]
fn a_read_write_grant_allows_changes_inside_its_directory_only() {
    let (outer, granted) = layout();
    let pool = builder()
        .grant_dir(&granted, "/out", DirAccess::ReadWrite)
        .build()
        .unwrap();
    assert_eq!(
        run(&pool, Probe::Write("/out/new.txt".into(), b"made".to_vec())).unwrap(),
        Answer::Done
    );
    assert_eq!(std::fs::read(granted.join("new.txt")).unwrap(), b"made");
    run(
        &pool,
        Probe::Append("/out/new.txt".into(), b" here".to_vec()),
    )
    .unwrap();
    assert_eq!(
        std::fs::read(granted.join("new.txt")).unwrap(),
        b"made here"
    );
    run(&pool, Probe::Mkdir("/out/made".into())).unwrap();
    assert!(granted.join("made").is_dir());
    run(
        &pool,
        Probe::Rename("/out/new.txt".into(), "/out/made/moved.txt".into()),
    )
    .unwrap();
    assert_eq!(
        std::fs::read(granted.join("made/moved.txt")).unwrap(),
        b"made here"
    );
    run(&pool, Probe::Remove("/out/made/moved.txt".into())).unwrap();
    run(&pool, Probe::RemoveDir("/out/made".into())).unwrap();
    assert!(!granted.join("made").exists());

    // Nothing outside: not through `..`, links, or a rename out.
    for path in [
        "/out/../escaped.txt",
        "/out/sub/../../escaped.txt",
        "/out/dir_link/escaped.txt",
        "/out/link_out",
        "/out/abs_link",
    ] {
        denied(
            run(&pool, Probe::Write(path.into(), b"pwned".to_vec())),
            path,
        );
    }
    denied(
        run(
            &pool,
            Probe::Rename("/out/inside.txt".into(), "/out/../stolen.txt".into()),
        ),
        "rename out",
    );
    denied(
        run(&pool, Probe::Mkdir("/out/../made_outside".into())),
        "mkdir out",
    );
    denied(
        run(&pool, Probe::Remove("/out/../secret.txt".into())),
        "remove out",
    );
    assert_eq!(raw_errno(&pool, 3, "../escaped.txt", true), ENOTCAPABLE);
    assert_eq!(raw_errno(&pool, 3, "/tmp/escaped.txt", true), ENOTCAPABLE);
    assert_eq!(
        std::fs::read(outer.path().join("secret.txt")).unwrap(),
        b"host secret"
    );
    let mut outside: Vec<String> = std::fs::read_dir(outer.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    outside.sort();
    assert_eq!(
        outside,
        ["granted", "secret.txt"],
        "nothing was created outside"
    );
}

#[test]
fn paths_that_escape_the_grant_are_refused_by_the_host() {
    let (outer, granted) = layout();
    let before = snapshot(outer.path());
    let pool = builder()
        .grant_dir(&granted, "/data", DirAccess::ReadOnly)
        .build()
        .unwrap();
    // Through libc, as a real guest would.
    for path in [
        "/data/../secret.txt",
        "/data/sub/../../secret.txt",
        "/data/link_out",
        "/data/abs_link",
        "/data/dir_link/secret.txt",
        "/data/dir_link/granted/inside.txt",
        "/etc/passwd",
        "/proc/self/environ",
        "../secret.txt",
    ] {
        denied(run(&pool, Probe::Read(path.into())), path);
    }
    denied(run(&pool, Probe::List("/data/..".into())), "list ..");
    denied(
        run(&pool, Probe::List("/data/dir_link".into())),
        "list link",
    );
    // Straight to WASI `path_open` on descriptor 3: the kernel refuses.
    for path in [
        "../secret.txt",
        "sub/../../secret.txt",
        "..",
        "/etc/passwd",
        "/",
        "link_out",
        "abs_link",
        "dir_link/secret.txt",
        "/proc/self/root/etc/passwd",
        "sub/../../granted/../secret.txt",
    ] {
        assert_eq!(
            raw_errno(&pool, 3, path, false),
            ENOTCAPABLE,
            "path_open(3, {path:?})"
        );
    }
    // The control case: the same call inside the grant works.
    assert_eq!(
        run(
            &pool,
            Probe::RawOpen {
                dirfd: 3,
                path: "sub/../inside.txt".into(),
                write: false
            }
        )
        .unwrap(),
        Answer::Raw {
            errno: 0,
            head: b"hello from the grant".to_vec()
        }
    );
    assert_eq!(snapshot(outer.path()), before);
}

#[test]
fn a_fifo_in_the_grant_is_refused_at_once_instead_of_blocking_the_worker() {
    let (_outer, granted) = layout();
    let fifo = granted.join("fifo");
    let path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `path` is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o644) }, 0);
    let pool = builder()
        .grant_dir(&granted, "/data", DirAccess::ReadWrite)
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    denied(run(&pool, Probe::Read("/data/fifo".into())), "read fifo");
    denied(
        run(&pool, Probe::Write("/data/fifo".into(), b"x".to_vec())),
        "write fifo",
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn a_grant_bounds_open_files_and_bytes_written_per_task() {
    let (_outer, granted) = layout();
    let pool = builder()
        .grant_dir(&granted, "/data", DirAccess::ReadWrite)
        .max_file_writes(1000)
        .build()
        .unwrap();
    assert_eq!(
        run(
            &pool,
            Probe::OpenMany {
                path: "/data/inside.txt".into(),
                count: 1000
            }
        )
        .unwrap(),
        Answer::Opened(sandpool::MAX_OPEN_FILES as u32)
    );
    // Descriptors do not outlive their task: the next task can open as many again.
    assert_eq!(
        run(
            &pool,
            Probe::OpenMany {
                path: "/data/inside.txt".into(),
                count: 1000
            }
        )
        .unwrap(),
        Answer::Opened(sandpool::MAX_OPEN_FILES as u32)
    );
    let message = denied(
        run(&pool, Probe::Write("/data/big.bin".into(), vec![1; 5000])),
        "over the quota",
    );
    assert!(message.contains("QuotaExceeded"), "{message}");
    let written = std::fs::metadata(granted.join("big.bin")).unwrap().len();
    assert_eq!(written, 1000, "writes stop at the quota");
    // The quota is per task.
    run(&pool, Probe::Write("/data/small.bin".into(), vec![2; 900])).unwrap();
}

#[test]
fn granting_a_missing_directory_two_directories_or_a_process_pool_is_a_config_error() {
    let (_outer, granted) = layout();
    let kind = |b: PoolBuilder<Probe, Answer>| b.build().map(drop).unwrap_err().kind();
    assert_eq!(
        kind(builder().grant_dir(granted.join("nope"), "/d", DirAccess::ReadOnly)),
        ErrorKind::Config
    );
    assert_eq!(
        kind(builder().grant_dir(granted.join("inside.txt"), "/d", DirAccess::ReadOnly)),
        ErrorKind::Config
    );
    assert_eq!(
        kind(
            builder()
                .grant_dir(&granted, "/a", DirAccess::ReadOnly)
                .grant_dir(&granted, "/b", DirAccess::ReadOnly)
        ),
        ErrorKind::Config
    );
    assert_eq!(
        kind(
            builder()
                .grant_dir(&granted, "/d", DirAccess::ReadOnly)
                .isolation(Isolation::Process)
        ),
        ErrorKind::Config
    );
}
