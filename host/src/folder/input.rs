//! Reading one input: its size checked against `--max-input` before a byte
//! is read, then read whole under a budget of bytes in flight shared by all
//! workers, so host memory is bounded by bytes, not by a count of files.

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::sync::{Condvar, Mutex};

use crate::error::{Error, TaskRef};

/// Bytes the workers may hold in input buffers at once.
#[derive(Debug)]
pub(crate) struct ByteBudget {
    left: Mutex<u64>,
    freed: Condvar,
    total: u64,
}

/// Bytes taken from a [`ByteBudget`], given back on drop.
#[derive(Debug)]
pub(crate) struct Reserved<'a> {
    budget: &'a ByteBudget,
    bytes: u64,
}

impl ByteBudget {
    pub(crate) fn new(total: u64) -> Self {
        ByteBudget {
            left: Mutex::new(total),
            freed: Condvar::new(),
            total,
        }
    }

    /// Takes `bytes` (at most the total), waiting until they are free.
    pub(crate) fn reserve(&self, bytes: u64) -> Reserved<'_> {
        let bytes = bytes.min(self.total);
        let mut left = self.left.lock().unwrap_or_else(|p| p.into_inner());
        while *left < bytes {
            left = self.freed.wait(left).unwrap_or_else(|p| p.into_inner());
        }
        *left -= bytes;
        Reserved {
            budget: self,
            bytes,
        }
    }
}

impl Reserved<'_> {
    /// How many bytes are held.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        if self.bytes == 0 {
            return;
        }
        let mut left = self.budget.left.lock().unwrap_or_else(|p| p.into_inner());
        *left += self.bytes;
        drop(left);
        self.budget.freed.notify_all();
    }
}

/// Inputs up to this size are read without a reservation in the budget.
const SMALL_INPUT: u64 = 1 << 20;

/// Reads a regular file of `size` bytes (as of its stat) and at most
/// `limit + 1`. A read that ends exactly at `size` ends the file: that
/// saves the usual extra `read` that returns 0 (a file still being
/// appended to gives a snapshot either way).
fn read_to_end(mut file: std::fs::File, size: u64, limit: u64) -> std::io::Result<Vec<u8>> {
    let cap = size.min(limit) as usize + 1;
    let mut data = Vec::with_capacity(cap);
    loop {
        if data.len() == data.capacity() {
            if data.len() as u64 > limit {
                return Ok(data);
            }
            data.reserve((data.len()).clamp(4096, 1 << 20));
        }
        let spare = data.capacity() - data.len();
        let want = spare.min((limit + 1 - data.len() as u64) as usize);
        let start = data.len();
        data.resize(start + want, 0);
        let got = match file.read(&mut data[start..]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                data.truncate(start);
                continue;
            }
            Err(e) => return Err(e),
        };
        data.truncate(start + got);
        if got == 0 || (data.len() as u64 == size && got < want) {
            return Ok(data);
        }
    }
}

/// Why an input was not read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// Over the size limit (checked before reading, and again while reading).
    TooLarge { size: u64, limit: u64 },
    /// Not a regular file any more (replaced since it was listed).
    NotAFile,
    /// The OS refused.
    Io(std::io::Error),
}

impl ReadError {
    /// The error of `task`, whose input is shown as `input`.
    pub(crate) fn into_error(self, task: TaskRef, input: &str) -> Error {
        match self {
            ReadError::TooLarge { size, limit } => Error::Encode {
                task,
                reason: format!(
                    "{input} is {size} bytes, over the input limit of {limit} bytes \
                     (--max-input, by default half the memory cap); not read"
                ),
            },
            ReadError::NotAFile => Error::Io {
                context: format!("cannot read input {input}"),
                message: "not a regular file (replaced since it was listed?)".into(),
            },
            ReadError::Io(e) => Error::io(format!("cannot read input {input}"), &e),
        }
    }
}

/// Opens `path` (relative to the input folder `root`), checks its size
/// against `limit`, reserves twice its size in `budget` (the bytes and
/// their encoded copy) and reads it. Does not follow a symbolic link and
/// does not block on a FIFO swapped in since the listing.
pub(crate) fn read_input<'b>(
    root: &OwnedFd,
    path: &[u8],
    limit: u64,
    budget: &'b ByteBudget,
) -> Result<(Vec<u8>, Reserved<'b>), ReadError> {
    let c = CString::new(path).map_err(|_| ReadError::NotAFile)?;
    // SAFETY: valid descriptor and NUL-terminated path; the result is checked.
    let fd = unsafe {
        libc::openat(
            root.as_raw_fd(),
            c.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK,
        )
    };
    if fd < 0 {
        return Err(ReadError::Io(std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` is a fresh descriptor we own.
    let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let meta = file.metadata().map_err(ReadError::Io)?;
    if !meta.is_file() {
        return Err(ReadError::NotAFile);
    }
    let size = meta.size();
    if size > limit {
        return Err(ReadError::TooLarge { size, limit });
    }
    // Small inputs take nothing from the budget: a worker holds at most its
    // read-ahead (worker.rs, READ_AHEAD_BYTES) and one more small input, so
    // together they are at most workers × (read-ahead + 2 × SMALL_INPUT).
    let reserved = budget.reserve(if size <= SMALL_INPUT {
        0
    } else {
        size.saturating_mul(2)
    });
    let data = read_to_end(file, size, limit).map_err(ReadError::Io)?;
    if data.len() as u64 > limit {
        return Err(ReadError::TooLarge {
            size: data.len() as u64,
            limit,
        });
    }
    Ok((data, reserved))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(dir: &std::path::Path) -> OwnedFd {
        std::fs::File::open(dir).unwrap().into()
    }

    #[test]
    fn an_input_over_the_limit_is_refused_before_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let big = std::fs::File::create(dir.path().join("big")).unwrap();
        big.set_len(1 << 40).unwrap(); // sparse: 1 TiB claimed, nothing stored
        std::fs::write(dir.path().join("small"), b"hello").unwrap();
        let budget = ByteBudget::new(1 << 20);
        let fd = root(dir.path());
        match read_input(&fd, b"big", 1 << 20, &budget) {
            Err(ReadError::TooLarge { size, limit }) => {
                assert_eq!((size, limit), (1 << 40, 1 << 20))
            }
            other => panic!("{other:?}"),
        }
        let (data, _reserved) = read_input(&fd, b"small", 1 << 20, &budget).unwrap();
        assert_eq!(data, b"hello");
    }

    #[test]
    fn the_budget_blocks_until_bytes_are_given_back() {
        let budget = ByteBudget::new(100);
        let first = budget.reserve(80);
        let waited = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let _second = budget.reserve(50);
                assert!(waited.load(std::sync::atomic::Ordering::SeqCst));
            });
            std::thread::sleep(std::time::Duration::from_millis(50));
            waited.store(true, std::sync::atomic::Ordering::SeqCst);
            drop(first);
        });
    }
}
