//! Length-prefixed frames over pipes, both directions of the supervisor ↔
//! worker protocol.
//!
//! A frame is a 4-byte little-endian payload length followed by the payload
//! (one bincode value, see [`crate::codec`]). Reading is bounded: a length
//! over the caller's maximum is refused before anything is allocated, a
//! stream that ends inside a frame is [`FrameError::Truncated`], and with a
//! deadline, a peer that stops sending is [`FrameError::TimedOut`] instead of
//! a hang. Writing with a deadline uses a non-blocking descriptor, so a peer
//! that stops reading cannot block the writer forever either.

use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

/// Bytes of the length prefix.
pub(crate) const HEADER: usize = 4;

/// Smallest read the buffer asks the kernel for.
const CHUNK: usize = 16 << 10;

/// Largest buffer kept between frames.
const RETAIN: usize = 1 << 20;

/// Why a frame could not be read or written.
#[derive(Debug)]
pub(crate) enum FrameError {
    /// The stream ended cleanly between frames.
    Eof,
    /// The stream ended inside a frame.
    Truncated { expected: usize, got: usize },
    /// The length prefix is over the bound for this frame.
    TooLarge { len: usize, max: usize },
    /// The deadline passed before the frame was complete.
    TimedOut,
    /// The payload is not a valid message.
    Malformed(String),
    /// The operating system reported an error (e.g. a broken pipe).
    Io(io::Error),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Eof => write!(f, "the stream ended"),
            FrameError::Truncated { expected, got } => {
                write!(
                    f,
                    "the stream ended inside a frame ({got} of {expected} bytes)"
                )
            }
            FrameError::TooLarge { len, max } => {
                write!(f, "a frame of {len} bytes is over the limit of {max}")
            }
            FrameError::TimedOut => write!(f, "timed out"),
            FrameError::Malformed(reason) => write!(f, "malformed frame: {reason}"),
            FrameError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Encodes `message` as one frame (length prefix included) into `out`, which is cleared first.
pub(crate) fn encode<T: serde::Serialize + ?Sized>(
    message: &T,
    out: &mut Vec<u8>,
) -> Result<(), FrameError> {
    out.clear();
    out.extend_from_slice(&[0; HEADER]);
    crate::codec::encode_into(message, out).map_err(FrameError::Malformed)?;
    let len = out.len() - HEADER;
    let Ok(len32) = u32::try_from(len) else {
        return Err(FrameError::TooLarge {
            len,
            max: u32::MAX as usize,
        });
    };
    out[..HEADER].copy_from_slice(&len32.to_le_bytes());
    Ok(())
}

/// Decodes one frame payload (without its length prefix).
pub(crate) fn decode<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    crate::codec::decode_exact(payload).map_err(FrameError::Malformed)
}

/// Reads frames from a pipe, buffering what arrives ahead of the current frame.
pub(crate) struct FrameReader<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// How long each wait polls the pipe without sleeping (see [`FrameReader::read_frame_spinning`]).
    spin: Duration,
    /// Waits left that go straight to sleep because a recent poll did not pay off.
    spin_skip: u32,
}

impl<R: Read + AsFd> FrameReader<R> {
    pub fn new(inner: R) -> Self {
        FrameReader {
            inner,
            buf: Vec::new(),
            start: 0,
            end: 0,
            spin: Duration::ZERO,
            spin_skip: 0,
        }
    }

    /// [`read_frame`](Self::read_frame), but each wait for bytes first polls
    /// the pipe without sleeping for up to `spin` (yielding the CPU between
    /// polls) before it blocks. For a reply expected within microseconds (a
    /// capability call's answer), this saves the wake-up of a sleeping
    /// thread on an idle CPU, tens of µs on a VM; it costs at most `spin`
    /// of CPU per wait when the reply is late. Polling that does not pay
    /// off (the reply came later, or a yield gave the CPU to another
    /// thread: a busy machine, where sleeping is the faster wait) is
    /// skipped for the next [`SPIN_BACKOFF`] waits.
    pub fn read_frame_spinning(
        &mut self,
        max: usize,
        deadline: Option<Instant>,
        spin: Duration,
    ) -> Result<Vec<u8>, FrameError> {
        self.spin = spin;
        let result = self.read_frame(max, deadline);
        self.spin = Duration::ZERO;
        result
    }

    fn available(&self) -> usize {
        self.end - self.start
    }

    /// Reads one frame's payload of at most `max` bytes. `deadline`: give up
    /// with [`FrameError::TimedOut`] when it passes (`None`: wait as long as it takes).
    pub fn read_frame(
        &mut self,
        max: usize,
        deadline: Option<Instant>,
    ) -> Result<Vec<u8>, FrameError> {
        while self.available() < HEADER {
            if self.fill(HEADER, deadline)? == 0 {
                return match self.available() {
                    0 => Err(FrameError::Eof),
                    got => Err(FrameError::Truncated {
                        expected: HEADER,
                        got,
                    }),
                };
            }
        }
        let mut prefix = [0u8; HEADER];
        prefix.copy_from_slice(&self.buf[self.start..self.start + HEADER]);
        let len = u32::from_le_bytes(prefix) as usize;
        if len > max {
            return Err(FrameError::TooLarge { len, max });
        }
        let total = HEADER + len;
        while self.available() < total {
            if self.fill(total, deadline)? == 0 {
                return Err(FrameError::Truncated {
                    expected: total,
                    got: self.available(),
                });
            }
        }
        let payload = self.buf[self.start + HEADER..self.start + total].to_vec();
        self.start += total;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > RETAIN {
                // Do not keep a huge buffer alive after one huge frame.
                self.buf = Vec::new();
            }
        }
        Ok(payload)
    }

    /// Reads more bytes so that a frame of `want` bytes can fit; returns how many arrived (0 at EOF).
    fn fill(&mut self, want: usize, deadline: Option<Instant>) -> Result<usize, FrameError> {
        if self.buf.len() - self.start < want {
            // Move the unread bytes to the front, then grow if the frame still does not fit.
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.buf.len() < want.max(CHUNK) {
                self.buf.resize(want.max(CHUNK), 0);
            }
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if !self.spin.is_zero() {
            if self.spin_skip > 0 {
                self.spin_skip -= 1;
            } else if !spin_until_readable(self.inner.as_fd().as_raw_fd(), self.spin) {
                self.spin_skip = SPIN_BACKOFF;
            }
        }
        loop {
            if let Some(deadline) = deadline {
                wait_for(self.inner.as_fd().as_raw_fd(), libc::POLLIN, deadline)?;
            }
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(FrameError::Io(e)),
            }
        }
    }
}

/// Writes one encoded frame. With a deadline, `writer` must be non-blocking
/// (see [`set_nonblocking`]): the write then waits for room until the deadline.
/// An error leaves an unknown part of the frame written.
pub(crate) fn write_frame<W: Write + AsFd>(
    writer: &mut W,
    frame: &[u8],
    deadline: Option<Instant>,
) -> Result<(), FrameError> {
    let mut written = 0;
    while written < frame.len() {
        match writer.write(&frame[written..]) {
            Ok(0) => return Err(FrameError::Io(io::ErrorKind::WriteZero.into())),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => match deadline {
                Some(deadline) => wait_for(writer.as_fd().as_raw_fd(), libc::POLLOUT, deadline)?,
                None => wait_for_ever(writer.as_fd().as_raw_fd(), libc::POLLOUT)?,
            },
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    Ok(())
}

/// Puts a descriptor into non-blocking mode (for [`write_frame`] with a deadline).
pub(crate) fn set_nonblocking(fd: &impl AsFd) -> io::Result<()> {
    let fd = fd.as_fd().as_raw_fd();
    // SAFETY: fcntl on a descriptor we hold open (borrowed for the call); no memory is passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Asks the kernel for a pipe buffer of `bytes` (Linux; best effort:
/// unprivileged processes get at most `/proc/sys/fs/pipe-max-size`, 1 MiB
/// by default, and elsewhere this does nothing). A request frame of many
/// tasks then goes into the pipe in one write, without the two sides
/// waking each other once per 64 KiB (the default size).
pub(crate) fn grow_pipe(fd: &impl AsFd, bytes: usize) {
    #[cfg(target_os = "linux")]
    {
        let fd = fd.as_fd().as_raw_fd();
        let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        // SAFETY: fcntl on a descriptor we hold open (borrowed for the call); no memory is passed.
        unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, bytes) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (fd, bytes);
}

/// Waits until `fd` is ready for `events` or `deadline` passes. Data that
/// is already there counts even after the deadline (it is checked once more).
fn wait_for(fd: i32, events: libc::c_short, deadline: Instant) -> Result<(), FrameError> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // Round up so a sub-millisecond remainder still waits.
        let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        if poll(fd, events, ms)? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(FrameError::TimedOut);
        }
    }
}

/// Waits that sleep at once after a poll that did not pay off.
pub(crate) const SPIN_BACKOFF: u32 = 64;

/// A yield that took longer gave the CPU to another thread.
const SLOW_YIELD: Duration = Duration::from_micros(10);

/// Polls `fd` without sleeping until it is readable (or hung up): true.
/// False when `spin` passes first, or when the CPU turns out to be wanted
/// by another thread (a yield took over [`SLOW_YIELD`]).
fn spin_until_readable(fd: i32, spin: Duration) -> bool {
    let start = Instant::now();
    loop {
        if poll(fd, libc::POLLIN, 0).unwrap_or(true) {
            return true;
        }
        if start.elapsed() >= spin {
            return false;
        }
        // Let the peer run if it waits for this CPU (a loaded 2-core box).
        let yielded = Instant::now();
        std::thread::yield_now();
        if yielded.elapsed() > SLOW_YIELD {
            return false;
        }
    }
}

fn wait_for_ever(fd: i32, events: libc::c_short) -> Result<(), FrameError> {
    while !poll(fd, events, -1)? {}
    Ok(())
}

/// One `poll(2)`: true when the descriptor is ready (or hung up / in error,
/// which the following read or write reports).
fn poll(fd: i32, events: libc::c_short, timeout_ms: i32) -> Result<bool, FrameError> {
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: `pfd` is a valid pollfd for the duration of the call and nfds is 1.
    let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(false);
        }
        return Err(FrameError::Io(e));
    }
    Ok(n > 0)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Msg {
        id: u64,
        text: String,
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_grown_pipe_takes_a_whole_large_frame_in_one_write() {
        let (reader, mut writer) = std::io::pipe().expect("pipe");
        let limit: usize = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1 << 20);
        let want = limit.min(1 << 20);
        grow_pipe(&writer, want);
        // SAFETY: fcntl on a descriptor held open; no memory is passed.
        let size = unsafe { libc::fcntl(writer.as_fd().as_raw_fd(), libc::F_GETPIPE_SZ) };
        assert!(
            size >= 0 && size as usize >= want,
            "pipe size {size}, asked {want}"
        );
        // A frame larger than the default 64 KiB goes in without a reader.
        set_nonblocking(&writer).expect("nonblocking");
        let payload = vec![7u8; (want / 2).max(128 << 10)];
        let len = u32::try_from(payload.len()).expect("small");
        let mut frame = len.to_le_bytes().to_vec();
        frame.extend_from_slice(&payload);
        write_frame(
            &mut writer,
            &frame,
            Some(Instant::now() + Duration::from_secs(5)),
        )
        .expect("the whole frame fits in the grown pipe");
        let mut frames = FrameReader::new(reader);
        assert_eq!(
            frames.read_frame(payload.len(), None).expect("frame"),
            payload
        );
    }

    fn frame_of(msg: &Msg) -> Vec<u8> {
        let mut out = Vec::new();
        encode(msg, &mut out).unwrap();
        out
    }

    fn soon() -> Option<Instant> {
        Some(Instant::now() + Duration::from_secs(5))
    }

    #[test]
    fn frames_round_trip_back_to_back() {
        let (r, mut w) = io::pipe().unwrap();
        let a = Msg {
            id: 1,
            text: "a".into(),
        };
        let b = Msg {
            id: 2,
            text: "b".repeat(100_000),
        };
        let mut bytes = frame_of(&a);
        bytes.extend(frame_of(&b));
        let writer = std::thread::spawn(move || w.write_all(&bytes));
        let mut reader = FrameReader::new(r);
        assert_eq!(
            decode::<Msg>(&reader.read_frame(1 << 20, soon()).unwrap()).unwrap(),
            a
        );
        assert_eq!(
            decode::<Msg>(&reader.read_frame(1 << 20, soon()).unwrap()).unwrap(),
            b
        );
        writer.join().unwrap().unwrap();
        assert!(matches!(
            reader.read_frame(1 << 20, soon()),
            Err(FrameError::Eof)
        ));
    }

    #[test]
    fn a_truncated_header_is_an_error() {
        let (r, mut w) = io::pipe().unwrap();
        w.write_all(&[5, 0]).unwrap();
        drop(w);
        let err = FrameReader::new(r).read_frame(100, None).unwrap_err();
        assert!(
            matches!(
                err,
                FrameError::Truncated {
                    expected: 4,
                    got: 2
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_truncated_body_is_an_error() {
        let (r, mut w) = io::pipe().unwrap();
        let mut bytes = frame_of(&Msg {
            id: 7,
            text: "hello".into(),
        });
        bytes.truncate(bytes.len() - 2);
        w.write_all(&bytes).unwrap();
        drop(w);
        let err = FrameReader::new(r).read_frame(100, None).unwrap_err();
        assert!(matches!(err, FrameError::Truncated { .. }), "{err}");
    }

    #[test]
    fn an_oversized_length_is_refused_before_reading_the_body() {
        let (r, mut w) = io::pipe().unwrap();
        w.write_all(&u32::MAX.to_le_bytes()).unwrap();
        // The writer stays open: the reader must not wait for 4 GiB that never come.
        let err = FrameReader::new(r).read_frame(1 << 20, None).unwrap_err();
        assert!(
            matches!(err, FrameError::TooLarge { len, max } if len == u32::MAX as usize && max == 1 << 20)
        );
        drop(w);
    }

    #[test]
    fn a_garbage_payload_is_malformed_not_a_panic() {
        for payload in [
            vec![],
            vec![0xff; 3],
            vec![1, 200, 200, 200, 200, 200, 200, 200, 200, 200],
        ] {
            let err = decode::<Msg>(&payload).unwrap_err();
            assert!(matches!(err, FrameError::Malformed(_)), "{err}");
        }
        // Trailing bytes after a valid message are refused too.
        let mut bytes = frame_of(&Msg {
            id: 1,
            text: String::new(),
        })[HEADER..]
            .to_vec();
        bytes.push(0);
        assert!(matches!(
            decode::<Msg>(&bytes),
            Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn a_silent_peer_times_out_instead_of_hanging() {
        let (r, mut w) = io::pipe().unwrap();
        let mut reader = FrameReader::new(r);
        let started = Instant::now();
        let err = reader
            .read_frame(100, Some(Instant::now() + Duration::from_millis(50)))
            .unwrap_err();
        assert!(matches!(err, FrameError::TimedOut), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
        // Half a frame, then silence: also a timeout.
        w.write_all(&[10, 0, 0, 0, 1, 2]).unwrap();
        let err = reader
            .read_frame(100, Some(Instant::now() + Duration::from_millis(50)))
            .unwrap_err();
        assert!(matches!(err, FrameError::TimedOut), "{err}");
    }

    #[test]
    fn spinning_reads_frames_and_still_times_out_on_a_silent_peer() {
        let spin = Duration::from_micros(50);
        let (r, mut w) = io::pipe().unwrap();
        let mut reader = FrameReader::new(r);
        let err = reader
            .read_frame_spinning(100, Some(Instant::now() + Duration::from_millis(50)), spin)
            .unwrap_err();
        assert!(matches!(err, FrameError::TimedOut), "{err}");
        // The poll did not pay off: the next waits sleep at once, and still read.
        assert_eq!(reader.spin_skip, SPIN_BACKOFF);
        for id in 0..3 {
            w.write_all(&frame_of(&Msg {
                id,
                text: "x".into(),
            }))
            .unwrap();
            let payload = reader.read_frame_spinning(100, soon(), spin).unwrap();
            assert_eq!(decode::<Msg>(&payload).unwrap().id, id);
        }
        assert_eq!(reader.spin, Duration::ZERO, "spinning is per read");
    }

    #[test]
    fn a_frame_already_waiting_is_read_even_past_the_deadline() {
        let (r, mut w) = io::pipe().unwrap();
        w.write_all(&frame_of(&Msg {
            id: 9,
            text: "late".into(),
        }))
        .unwrap();
        let past = Instant::now();
        std::thread::sleep(Duration::from_millis(5));
        let payload = FrameReader::new(r).read_frame(100, Some(past)).unwrap();
        assert_eq!(decode::<Msg>(&payload).unwrap().id, 9);
    }

    #[test]
    fn a_writer_facing_a_reader_that_never_reads_times_out() {
        let (r, mut w) = io::pipe().unwrap();
        set_nonblocking(&w).unwrap();
        let big = vec![0u8; 4 << 20]; // far more than a pipe buffer holds
        let err = write_frame(
            &mut w,
            &big,
            Some(Instant::now() + Duration::from_millis(50)),
        )
        .unwrap_err();
        assert!(matches!(err, FrameError::TimedOut), "{err}");
        drop(r);
        let err = write_frame(
            &mut w,
            &big,
            Some(Instant::now() + Duration::from_millis(50)),
        )
        .unwrap_err();
        assert!(
            matches!(&err, FrameError::Io(e) if e.kind() == io::ErrorKind::BrokenPipe),
            "{err}"
        );
    }
}
