//! The output file of a JSON Lines run: locked against a second writer,
//! and resumed (complete lines counted, a torn last line cut off) or
//! truncated (`--force`).

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::error::Error;

/// Counts complete lines of an existing output, cuts off a torn last line,
/// and leaves the file positioned at its end.
fn resume_point(file: &mut File) -> std::io::Result<(u64, bool)> {
    file.seek(SeekFrom::Start(0))?;
    let mut reader = BufReader::with_capacity(1 << 16, &*file);
    let (mut lines, mut end_of_last, mut pos) = (0u64, 0u64, 0u64);
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        for (i, &b) in buf.iter().enumerate() {
            if b == b'\n' {
                lines += 1;
                end_of_last = pos + i as u64 + 1;
            }
        }
        let n = buf.len();
        pos += n as u64;
        reader.consume(n);
    }
    drop(reader);
    let torn = pos > end_of_last;
    if torn {
        file.set_len(end_of_last)?;
    }
    file.seek(SeekFrom::Start(end_of_last))?;
    Ok((lines, torn))
}

/// Opens the output file, locked against a second run, resumed or truncated.
pub(super) fn open_output(path: &Path, force: bool) -> Result<(File, u64, bool), Error> {
    let what = || format!("output file {}", path.display());
    if path.is_dir() {
        return Err(Error::Io {
            context: what(),
            message: "is a folder; JSON Lines mode writes one file (-o results.jsonl)".into(),
        });
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::io(format!("cannot open {}", what()), &e))?;
    // SAFETY: `flock` on a descriptor we own; no memory is involved.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(Error::Io {
            context: format!("{} is in use", what()),
            message: "another sandpool run is writing it; wait for it to end".into(),
        });
    }
    if force {
        file.set_len(0)
            .map_err(|e| Error::io(format!("cannot truncate {}", what()), &e))?;
        return Ok((file, 0, false));
    }
    let (done, torn) =
        resume_point(&mut file).map_err(|e| Error::io(format!("cannot resume {}", what()), &e))?;
    Ok((file, done, torn))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn resuming_counts_complete_lines_and_cuts_a_torn_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        std::fs::write(&path, "{\"line\":1}\n{\"line\":2}\n{\"li").unwrap();
        let (mut file, done, torn) = open_output(&path, false).unwrap();
        assert_eq!((done, torn), (2, true));
        file.write_all(b"{\"line\":3}\n").unwrap();
        drop(file);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"line\":1}\n{\"line\":2}\n{\"line\":3}\n"
        );
    }

    #[test]
    fn a_second_writer_of_one_output_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let _first = open_output(&path, false).unwrap();
        let err = open_output(&path, false).unwrap_err().to_string();
        assert!(err.contains("in use"), "{err}");
    }
}
