//! Listing the input folder as a stream: the walk hands entries to the
//! workers through a bounded queue while it goes on, so computing starts at
//! the first file and memory stays flat however many files there are.
//! Folders that cannot be listed become failed entries, not a failed run;
//! the output folder is never walked into.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// One input found by the walk.
#[derive(Debug)]
pub(crate) struct Entry {
    /// Position in the listing (the index in the input's `TaskRef`).
    pub index: u64,
    /// Path relative to the input folder: bytes, components joined by `/`.
    pub path: Vec<u8>,
    /// `None` for a file; for a folder that could not be listed, why.
    pub unlisted: Option<String>,
}

/// Entries the queue holds at most; the walk waits when it is full.
const HIGH_WATER: usize = 1024;
/// The walk is woken again once the queue has drained to this.
const LOW_WATER: usize = 512;
/// Entries a worker takes at once at most.
const MAX_TAKE: usize = 32;

#[derive(Default)]
struct FeedState {
    items: VecDeque<Entry>,
    done: bool,
    stopped: bool,
    idle_workers: usize,
    walker_waiting: bool,
}

/// The queue between the walk and the workers. A worker takes a share of
/// the queued entries at a time (up to `MAX_TAKE`) under a mutex; nobody is
/// woken per entry: workers sleep only when the walk is behind, and the
/// walk only when the queue is full, to be woken once per
/// `HIGH_WATER - LOW_WATER` entries.
#[derive(Default)]
pub(crate) struct Feed {
    state: Mutex<FeedState>,
    items: Condvar,
    room: Condvar,
}

impl Feed {
    fn lock(&self) -> std::sync::MutexGuard<'_, FeedState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds an entry, waiting while the queue is full and calling `tick`
    /// every `patience` of waiting (the caller reports progress there).
    /// Returns false once the feed is stopped.
    pub(crate) fn push(&self, entry: Entry, patience: Duration, tick: &mut dyn FnMut()) -> bool {
        let mut s = self.lock();
        while s.items.len() >= HIGH_WATER && !s.stopped {
            s.walker_waiting = true;
            let (guard, waited) = self
                .room
                .wait_timeout_while(s, patience, |s| s.walker_waiting && !s.stopped)
                .unwrap_or_else(|p| p.into_inner());
            s = guard;
            if waited.timed_out() {
                drop(s);
                tick();
                s = self.lock();
            }
        }
        if s.stopped {
            return false;
        }
        s.items.push_back(entry);
        if s.idle_workers > 0 {
            self.items.notify_one();
        }
        true
    }

    /// Moves the next entries into `local`: a fair share of the queue (so
    /// that the tail is spread over every worker), at least one and at
    /// most `MAX_TAKE`, waiting for the walk if the queue is empty. False
    /// at the end (nothing taken).
    pub(crate) fn take(&self, local: &mut VecDeque<Entry>, workers: usize) -> bool {
        let mut s = self.lock();
        loop {
            if s.stopped {
                return false;
            }
            if !s.items.is_empty() {
                let n = (s.items.len() / (2 * workers.max(1))).clamp(1, MAX_TAKE);
                local.extend(s.items.drain(..n));
                if s.walker_waiting && s.items.len() <= LOW_WATER {
                    s.walker_waiting = false;
                    self.room.notify_one();
                }
                return true;
            }
            if s.done {
                return false;
            }
            s.idle_workers += 1;
            s = self.items.wait(s).unwrap_or_else(|p| p.into_inner());
            s.idle_workers -= 1;
        }
    }

    /// The walk is over: workers drain what is queued, then end.
    pub(crate) fn finish(&self) {
        self.lock().done = true;
        self.items.notify_all();
    }

    /// Stop now (fail-fast, Ctrl-C): queued entries are dropped unprocessed.
    /// Returns how many were dropped.
    pub(crate) fn stop(&self) -> usize {
        let mut s = self.lock();
        s.stopped = true;
        let dropped = s.items.len();
        s.items.clear();
        drop(s);
        self.items.notify_all();
        self.room.notify_all();
        dropped
    }
}

/// A folder to skip while walking (the output folder), by device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DirId {
    dev: u64,
    ino: u64,
}

impl DirId {
    pub(crate) fn of(path: &Path) -> std::io::Result<Self> {
        Ok(Self::from_metadata(&std::fs::metadata(path)?))
    }

    pub(crate) fn from_metadata(m: &std::fs::Metadata) -> Self {
        DirId {
            dev: m.dev(),
            ino: m.ino(),
        }
    }
}

/// Walks `root` depth-first without following symbolic links, each folder
/// in name order (bytes; see [`SORT_LIMIT`]), its files before its
/// subfolders, calling
/// `found` for every regular file and for every folder that cannot be
/// listed, `listed` for every other folder below the root, and `skipped`
/// for a folder that is `skip` (the output folder).
/// Stops early when `found` returns false. Holds one open folder at a time
/// and the relative paths of the folders still to list.
pub(crate) fn walk(
    root: &Path,
    skip: Option<DirId>,
    mut found: impl FnMut(Vec<u8>, Option<String>) -> bool,
    mut listed: impl FnMut(&[u8]),
    mut skipped: impl FnMut(&[u8]),
) {
    let mut pending: Vec<Vec<u8>> = vec![Vec::new()];
    while let Some(rel) = pending.pop() {
        let abs = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(OsStr::from_bytes(&rel))
        };
        let listing = match std::fs::read_dir(&abs) {
            Ok(listing) => listing,
            Err(e) => {
                if !found(rel, Some(format!("cannot list folder: {e}"))) {
                    return;
                }
                continue;
            }
        };
        if !rel.is_empty() {
            listed(&rel);
        }
        let join = |name: &OsStr| {
            let mut path = Vec::with_capacity(rel.len() + 1 + name.len());
            path.extend_from_slice(&rel);
            if !rel.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(name.as_bytes());
            path
        };
        let mut subfolders = Vec::new();
        for entry in Sorted::new(listing) {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    // The rest of this folder cannot be read: fail it as a whole.
                    if !found(rel.clone(), Some(format!("cannot list folder: {e}"))) {
                        return;
                    }
                    break;
                }
            };
            let kind = match entry.file_type() {
                Ok(kind) => kind,
                Err(e) => {
                    if !found(
                        join(&entry.file_name()),
                        Some(format!("cannot tell a file from a folder: {e}")),
                    ) {
                        return;
                    }
                    continue;
                }
            };
            if kind.is_file() {
                if !found(join(&entry.file_name()), None) {
                    return;
                }
            } else if kind.is_dir() {
                let path = join(&entry.file_name());
                let is_skipped = skip.is_some_and(|skip| {
                    entry
                        .metadata()
                        .is_ok_and(|m| m.dev() == skip.dev && m.ino() == skip.ino)
                });
                if is_skipped {
                    skipped(&path);
                } else {
                    subfolders.push(path);
                }
            }
        }
        // Popped from the end: the first subfolder is walked first.
        pending.extend(subfolders.into_iter().rev());
    }
}

/// Entries of one folder sorted by name (bytes), when it has at most
/// `SORT_LIMIT` of them; a larger folder is listed in the order the file
/// system gives (stable for an unchanged folder) so memory stays bounded.
pub(crate) const SORT_LIMIT: usize = 100_000;

struct Sorted {
    buffered: std::vec::IntoIter<std::io::Result<std::fs::DirEntry>>,
    rest: Option<std::fs::ReadDir>,
}

impl Sorted {
    fn new(mut listing: std::fs::ReadDir) -> Self {
        let mut buffered = Vec::new();
        let mut complete = true;
        for entry in listing.by_ref() {
            let failed = entry.is_err();
            buffered.push(entry);
            if failed {
                break;
            }
            if buffered.len() == SORT_LIMIT {
                complete = false;
                break;
            }
        }
        if complete {
            // An error, if any, is the last entry and stays last.
            let end = buffered
                .iter()
                .position(Result::is_err)
                .unwrap_or(buffered.len());
            buffered[..end]
                .sort_by_cached_key(|e| e.as_ref().ok().map(std::fs::DirEntry::file_name));
        }
        Sorted {
            buffered: buffered.into_iter(),
            rest: (!complete).then_some(listing),
        }
    }
}

impl Iterator for Sorted {
    type Item = std::io::Result<std::fs::DirEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        self.buffered
            .next()
            .or_else(|| self.rest.as_mut().and_then(Iterator::next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_walk_finds_files_skips_the_output_folder_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::create_dir_all(root.join("out")).unwrap();
        std::fs::write(root.join("top.txt"), b"").unwrap();
        std::fs::write(root.join("a/b/deep.txt"), b"").unwrap();
        std::fs::write(root.join("out/x.json"), b"").unwrap();
        std::os::unix::fs::symlink(root.join("top.txt"), root.join("link.txt")).unwrap();
        let mut files = Vec::new();
        let mut skipped = Vec::new();
        let skip = DirId::of(&root.join("out")).ok();
        walk(
            root,
            skip,
            |p, e| {
                assert!(e.is_none());
                files.push(String::from_utf8(p).unwrap());
                true
            },
            |_| {},
            |p| skipped.push(String::from_utf8(p.to_vec()).unwrap()),
        );
        files.sort();
        assert_eq!(files, ["a/b/deep.txt", "top.txt"]);
        assert_eq!(skipped, ["out"]);
    }

    #[test]
    fn each_folder_is_walked_in_name_order_files_before_subfolders() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for name in ["b/z", "b/a", "a/y/x", "c", "B", "a/m", "é"] {
            let path = root.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"").unwrap();
        }
        let mut files = Vec::new();
        walk(
            root,
            None,
            |p, _| {
                files.push(String::from_utf8(p).unwrap());
                true
            },
            |_| {},
            |_| {},
        );
        assert_eq!(files, ["B", "c", "é", "a/m", "a/y/x", "b/a", "b/z"]);
    }

    #[test]
    fn the_feed_hands_every_entry_to_one_worker_and_ends() {
        let feed = Feed::default();
        let total = 5000u64;
        let seen = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    let mut local = VecDeque::new();
                    while feed.take(&mut local, 3) {
                        for e in local.drain(..) {
                            seen.fetch_add(e.index + 1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            }
            for index in 0..total {
                let entry = Entry {
                    index,
                    path: Vec::new(),
                    unlisted: None,
                };
                assert!(feed.push(entry, Duration::from_millis(10), &mut || {}));
            }
            feed.finish();
        });
        assert_eq!(seen.into_inner(), total * (total + 1) / 2);
    }
}
