//! A guest that reaches for the host through WASI: files, directories,
//! environment, arguments. The host's isolation tests run it with and
//! without a granted directory and check what it can and cannot do.
//!
//! Most operations go through Rust's `std::fs` (so through wasi-libc's
//! preopen lookup, as a real guest would); `RawOpen` calls WASI's
//! `path_open` directly, so the host's own checks are tested even for paths
//! libc would refuse before asking.
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
enum Probe {
    /// `std::fs::read(path)`.
    Read(String),
    /// `std::fs::write(path, bytes)`.
    Write(String, Vec<u8>),
    /// Open `path` for appending and write `bytes`.
    Append(String, Vec<u8>),
    /// The sorted names in directory `path`.
    List(String),
    /// `std::fs::create_dir(path)`.
    Mkdir(String),
    /// `std::fs::remove_file(path)`.
    Remove(String),
    /// `std::fs::remove_dir(path)`.
    RemoveDir(String),
    /// `std::fs::rename(from, to)`.
    Rename(String, String),
    /// `std::fs::metadata(path)`: size and whether it is a directory.
    Stat(String),
    /// Every environment variable.
    Env,
    /// Every command-line argument.
    Args,
    /// The preopened directories: WASI descriptor and guest path.
    Preopens,
    /// WASI `path_open(dirfd, path)` called directly, for reading or for
    /// writing (create + truncate); the errno, or 0 and the file's first bytes.
    RawOpen {
        dirfd: u32,
        path: String,
        write: bool,
    },
    /// Open `count` files at `path` without closing them; how many opened.
    OpenMany { path: String, count: u32 },
    /// Read `path` in chunks, seeking to `offset` first: the bytes from there.
    ReadAt { path: String, offset: u64 },
}

#[derive(Serialize)]
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

mod wasi {
    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    unsafe extern "C" {
        #[link_name = "path_open"]
        pub fn raw_path_open(
            fd: i32,
            dirflags: i32,
            path: *const u8,
            path_len: usize,
            oflags: i32,
            rights_base: i64,
            rights_inheriting: i64,
            fdflags: i32,
            opened: *mut i32,
        ) -> i32;
        #[link_name = "fd_prestat_get"]
        pub fn raw_fd_prestat_get(fd: i32, out: *mut u32) -> i32;
        #[link_name = "fd_prestat_dir_name"]
        pub fn raw_fd_prestat_dir_name(fd: i32, path: *mut u8, len: usize) -> i32;
        #[link_name = "fd_read"]
        pub fn raw_fd_read(fd: i32, iovs: *const u32, iovs_len: usize, nread: *mut u32) -> i32;
        #[link_name = "fd_close"]
        pub fn raw_fd_close(fd: i32) -> i32;
    }
}

fn io(e: std::io::Error) -> String {
    format!("{e} [{:?}]", e.kind())
}

fn raw_open(dirfd: u32, path: &str, write: bool) -> Answer {
    // Rights: fd_read (1 << 1) for reading; fd_write (1 << 6) for writing.
    let (oflags, rights) = if write {
        (1 | 8, 1i64 << 6) // creat | trunc
    } else {
        (0, 1i64 << 1)
    };
    let mut fd = -1;
    // SAFETY: the pointers are valid for the lengths given for the whole call.
    let errno = unsafe {
        wasi::raw_path_open(
            dirfd as i32,
            1,
            path.as_ptr(),
            path.len(),
            oflags,
            rights,
            rights,
            0,
            &mut fd,
        )
    };
    let mut head = Vec::new();
    if errno == 0 {
        if !write {
            let mut buf = [0u8; 64];
            let iov = [buf.as_mut_ptr() as u32, buf.len() as u32];
            let mut n = 0u32;
            // SAFETY: the iovec points into `buf`, which outlives the call.
            if unsafe { wasi::raw_fd_read(fd, iov.as_ptr(), 1, &mut n) } == 0 {
                head.extend_from_slice(&buf[..n as usize]);
            }
        }
        // SAFETY: `fd` was just opened by this guest.
        unsafe { wasi::raw_fd_close(fd) };
    }
    Answer::Raw {
        errno: errno as u16,
        head,
    }
}

fn preopens() -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for fd in 3..64 {
        let mut prestat = [0u32; 2];
        // SAFETY: `prestat` has room for the 8-byte prestat struct.
        if unsafe { wasi::raw_fd_prestat_get(fd, prestat.as_mut_ptr()) } != 0 {
            break;
        }
        let mut name = vec![0u8; prestat[1] as usize];
        // SAFETY: `name` has exactly the length passed.
        if unsafe { wasi::raw_fd_prestat_dir_name(fd, name.as_mut_ptr(), name.len()) } == 0 {
            found.push((fd as u32, String::from_utf8_lossy(&name).into_owned()));
        }
    }
    found
}

fn probe(probe: Probe) -> Result<Answer, String> {
    use std::io::{Read, Seek, Write};
    Ok(match probe {
        Probe::Read(path) => Answer::Bytes(std::fs::read(path).map_err(io)?),
        Probe::Write(path, bytes) => {
            std::fs::write(path, bytes).map_err(io)?;
            Answer::Done
        }
        Probe::Append(path, bytes) => {
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .open(path)
                .map_err(io)?;
            file.write_all(&bytes).map_err(io)?;
            Answer::Done
        }
        Probe::List(path) => {
            let mut names = Vec::new();
            for entry in std::fs::read_dir(path).map_err(io)? {
                names.push(
                    entry
                        .map_err(io)?
                        .file_name()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
            names.sort();
            Answer::Names(names)
        }
        Probe::Mkdir(path) => {
            std::fs::create_dir(path).map_err(io)?;
            Answer::Done
        }
        Probe::Remove(path) => {
            std::fs::remove_file(path).map_err(io)?;
            Answer::Done
        }
        Probe::RemoveDir(path) => {
            std::fs::remove_dir(path).map_err(io)?;
            Answer::Done
        }
        Probe::Rename(from, to) => {
            std::fs::rename(from, to).map_err(io)?;
            Answer::Done
        }
        Probe::Stat(path) => {
            let meta = std::fs::metadata(path).map_err(io)?;
            Answer::Stat {
                size: meta.len(),
                dir: meta.is_dir(),
            }
        }
        Probe::Env => Answer::Vars(std::env::vars().collect()),
        Probe::Args => Answer::Names(std::env::args().collect()),
        Probe::Preopens => Answer::Preopens(preopens()),
        Probe::RawOpen { dirfd, path, write } => raw_open(dirfd, &path, write),
        Probe::OpenMany { path, count } => {
            let mut files = Vec::new();
            for _ in 0..count {
                match std::fs::File::open(&path) {
                    Ok(f) => files.push(f),
                    Err(_) => break,
                }
            }
            Answer::Opened(files.len() as u32)
        }
        Probe::ReadAt { path, offset } => {
            let mut file = std::fs::File::open(path).map_err(io)?;
            file.seek(std::io::SeekFrom::Start(offset)).map_err(io)?;
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes).map_err(io)?;
            Answer::Bytes(bytes)
        }
    })
}
sandpool_guest::export_task!(probe);
