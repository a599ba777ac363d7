//! The output folder: atomic writes (temporary file, then rename) relative
//! to one open directory descriptor, the sweep of temporaries left by dead
//! runs, and a compact record of which names existed when the run started,
//! so that no syscall is spent on a file that cannot exist.

use std::ffi::CString;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use crate::error::Error;

use super::naming::{LOCK_NAME, TMP_PREFIX};

/// An output folder opened for one run (whose lock the caller holds).
#[derive(Debug)]
pub(crate) struct OutDir {
    fd: OwnedFd,
    path: PathBuf,
    /// Hashes of the names present at the start, sorted; `None`: too many
    /// to keep, so every check asks the file system.
    existing: Option<Vec<u64>>,
    /// Hashes of the ids that had a raw or multi-file output at the start
    /// (see `output::owner_of`), sorted; `None`: unknown (a folder could
    /// not be listed, or too many), so every check lists the input's folder.
    owners: Option<Vec<u64>>,
    /// Temporaries removed by the start-up sweep.
    pub swept: u64,
    /// Distinguishes this run's temporary names (the pid, computed once).
    run: u32,
}

/// Names kept in the start-up record at most (8 bytes each).
const MAX_RECORDED_NAMES: usize = 4 << 20;

fn name_hash(name: &[u8]) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    name.hash(&mut h);
    h.finish()
}

fn cstr(name: &str) -> std::io::Result<CString> {
    CString::new(name).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))
}

impl OutDir {
    /// Opens `path` (which exists) as a directory descriptor.
    pub(crate) fn open(path: &Path) -> Result<Self, Error> {
        let c = CString::new(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()))
            .map_err(|_| Error::Config(format!("{} contains a NUL byte", path.display())))?;
        // SAFETY: a valid NUL-terminated path; the result is checked.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(Error::io(
                format!("cannot open output folder {}", path.display()),
                &std::io::Error::last_os_error(),
            ));
        }
        Ok(OutDir {
            // SAFETY: `fd` is a fresh descriptor we own.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            path: path.to_path_buf(),
            existing: None,
            owners: None,
            swept: 0,
            run: std::process::id(),
        })
    }

    /// The folder's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Writes and removes a probe file: an output folder that cannot be
    /// written is a setup error, found before any task runs.
    pub(crate) fn probe_writable(&self) -> Result<(), Error> {
        let name = format!("{TMP_PREFIX}{}-probe", self.run);
        self.write_atomic_as(&name, &format!("{name}-done"), b"probe\n")
            .and_then(|()| self.remove(&format!("{name}-done")))
            .map_err(|e| {
                Error::io(
                    format!("cannot write to output folder {}", self.path.display()),
                    &e,
                )
            })
    }

    /// Removes every temporary file in the output tree (this run holds the
    /// folder's lock, so they belong to runs that died) and records the
    /// relative paths present. Does not follow symbolic links and does not
    /// enter `skip` (the input folder, if it lies inside the output).
    pub(crate) fn scan(&mut self, skip: Option<super::walk::DirId>) -> Result<(), Error> {
        self.scan_tree(skip, true)
    }

    /// [`scan`](Self::scan) without removing anything (`sweep` false:
    /// `sandpool status`, which does not hold the lock).
    pub(crate) fn scan_tree(
        &mut self,
        skip: Option<super::walk::DirId>,
        sweep: bool,
    ) -> Result<(), Error> {
        use std::os::unix::ffi::OsStrExt;
        let mut names = Vec::new();
        let mut owners = Vec::new();
        let mut keep = true;
        let mut keep_owners = true;
        let mut pending: Vec<Vec<u8>> = vec![Vec::new()];
        while let Some(rel) = pending.pop() {
            let abs = if rel.is_empty() {
                self.path.clone()
            } else {
                self.path.join(std::ffi::OsStr::from_bytes(&rel))
            };
            let listing = match std::fs::read_dir(&abs) {
                Ok(listing) => listing,
                Err(e) if rel.is_empty() => {
                    return Err(Error::io(
                        format!("cannot list output folder {}", self.path.display()),
                        &e,
                    ));
                }
                // A subfolder we cannot list: we cannot know what it holds.
                Err(_) => {
                    (keep, keep_owners) = (false, false);
                    continue;
                }
            };
            for entry in listing {
                let Ok(entry) = entry else {
                    (keep, keep_owners) = (false, false);
                    break;
                };
                let name = entry.file_name();
                let mut path = rel.clone();
                if !path.is_empty() {
                    path.push(b'/');
                }
                path.extend_from_slice(name.as_bytes());
                let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                if name.as_bytes().starts_with(TMP_PREFIX.as_bytes()) {
                    // A temporary file, or the folder of a multi-file output
                    // that was never renamed into place.
                    if sweep
                        && let Ok(text) = std::str::from_utf8(&path)
                        && self.remove_any(text, is_dir).is_ok()
                    {
                        self.swept += 1;
                    }
                    continue;
                }
                if rel.is_empty() && name.as_bytes() == LOCK_NAME.as_bytes() {
                    continue;
                }
                let owner = super::output::owner_of(&path, is_dir);
                if let Some(owner) = owner
                    && keep_owners
                {
                    owners.push(name_hash(owner));
                    if owners.len() > MAX_RECORDED_NAMES {
                        keep_owners = false;
                        owners = Vec::new();
                    }
                }
                // A multi-file output's folder is not part of the mirrored tree.
                if is_dir && owner.is_none() {
                    let skipped = skip.is_some_and(|skip| {
                        entry
                            .metadata()
                            .is_ok_and(|m| super::walk::DirId::from_metadata(&m) == skip)
                    });
                    if !skipped {
                        pending.push(path.clone());
                    }
                }
                if keep {
                    names.push(name_hash(&path));
                    if names.len() > MAX_RECORDED_NAMES {
                        keep = false;
                        names = Vec::new();
                    }
                }
            }
        }
        if keep {
            names.sort_unstable();
            self.existing = Some(names);
        }
        // Kept on their own: a huge folder of JSON results alone still
        // knows that no input has another kind of output.
        if keep_owners {
            owners.sort_unstable();
            self.owners = Some(owners);
        }
        Ok(())
    }

    /// Whether input `id` may have a raw or multi-file output: false only
    /// when it certainly has none (a lookup in the start-up record, no
    /// syscall).
    pub(crate) fn may_have_other(&self, id: &str) -> bool {
        match &self.owners {
            Some(owners) => owners.binary_search(&name_hash(id.as_bytes())).is_ok(),
            None => true,
        }
    }

    /// The descriptor of the output folder (for `output`'s writes).
    pub(crate) fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// A temporary name beside `name`, unique in this run by `tmp`.
    pub(crate) fn tmp_name(&self, name: &str, tmp: u64) -> String {
        match name.rfind('/') {
            Some(slash) => format!("{}/{TMP_PREFIX}{}-{tmp}", &name[..slash], self.run),
            None => format!("{TMP_PREFIX}{}-{tmp}", self.run),
        }
    }

    /// Removes `name`, a file or (`is_dir`) a whole folder; missing is not an error.
    pub(crate) fn remove_any(&self, name: &str, is_dir: bool) -> std::io::Result<()> {
        if !is_dir {
            return self.remove(name);
        }
        match std::fs::remove_dir_all(self.path.join(name)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// Whether `name` may exist: false only when it certainly does not
    /// (it was not there at the start, and this run has not written it).
    pub(crate) fn may_exist(&self, name: &str) -> bool {
        match &self.existing {
            Some(names) => names.binary_search(&name_hash(name.as_bytes())).is_ok(),
            None => true,
        }
    }

    /// Whether `name` holds a complete result (a JSON document).
    pub(crate) fn holds_json(&self, name: &str) -> bool {
        let Ok(c) = cstr(name) else { return false };
        // SAFETY: valid descriptor and NUL-terminated name; the result is checked.
        let fd = unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK,
            )
        };
        if fd < 0 {
            return false;
        }
        // SAFETY: `fd` is a fresh descriptor we own.
        let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let mut bytes = Vec::new();
        match file.metadata() {
            Ok(m) if m.is_file() => {}
            _ => return false,
        }
        if std::io::Read::read_to_end(&mut file, &mut bytes).is_err() {
            return false;
        }
        serde_json::from_slice::<&serde_json::value::RawValue>(&bytes).is_ok()
    }

    /// Writes `bytes` to `name` atomically: a temporary file (`tmp` makes
    /// its name unique in this run), then a rename. On any failure the
    /// temporary file is removed.
    pub(crate) fn write_atomic(&self, name: &str, bytes: &[u8], tmp: u64) -> std::io::Result<()> {
        let tmp_name = self.tmp_name(name, tmp);
        match self.write_atomic_as(&tmp_name, name, bytes) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && name.contains('/') => {
                // The first output of this folder: create the folders, then again.
                self.create_parents(name)?;
                self.write_atomic_as(&tmp_name, name, bytes)
            }
            other => other,
        }
    }

    /// Creates the folders above `name` (relative), each one as needed.
    pub(crate) fn create_parents(&self, name: &str) -> std::io::Result<()> {
        let mut end = 0;
        while let Some(slash) = name[end..].find('/') {
            end += slash;
            let folder = cstr(&name[..end])?;
            // SAFETY: valid descriptor and NUL-terminated name; the result is checked.
            if unsafe { libc::mkdirat(self.fd.as_raw_fd(), folder.as_ptr(), 0o755) } != 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::AlreadyExists {
                    return Err(e);
                }
            }
            end += 1;
        }
        Ok(())
    }

    fn write_atomic_as(&self, tmp_name: &str, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        let dir = self.fd.as_raw_fd();
        let tmp = cstr(tmp_name)?;
        let target = cstr(name)?;
        // SAFETY: valid descriptor and NUL-terminated name; the result is checked.
        let fd = unsafe {
            libc::openat(
                dir,
                tmp.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                0o644,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor we own.
        let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let written = write_and_close(file, bytes).and_then(|()| {
            // SAFETY: valid descriptor and NUL-terminated names; the result is checked.
            let rc = unsafe { libc::renameat(dir, tmp.as_ptr(), dir, target.as_ptr()) };
            if rc == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
        if written.is_err() {
            let _ = unlink(dir, &tmp);
        }
        written
    }

    /// Removes `name`; a missing file is not an error.
    pub(crate) fn remove(&self, name: &str) -> std::io::Result<()> {
        match unlink(self.fd.as_raw_fd(), &cstr(name)?) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}

/// Writes everything, then closes, reporting a failed close (NFS and full
/// disks can report a lost write only there).
pub(crate) fn write_and_close(mut file: std::fs::File, bytes: &[u8]) -> std::io::Result<()> {
    file.write_all(bytes)?;
    let fd: OwnedFd = file.into();
    let raw = std::os::fd::IntoRawFd::into_raw_fd(fd);
    // SAFETY: we own `raw` and close it exactly once.
    if unsafe { libc::close(raw) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

pub(crate) fn unlink(dir: RawFd, name: &std::ffi::CStr) -> std::io::Result<()> {
    // SAFETY: valid descriptor and NUL-terminated name; the result is checked.
    if unsafe { libc::unlinkat(dir, name.as_ptr(), 0) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweep_removes_temporaries_and_records_existing_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".sandpool-tmp-1-2"), b"half").unwrap();
        std::fs::write(dir.path().join("a.json"), b"{}").unwrap();
        let mut out = OutDir::open(dir.path()).unwrap();
        out.scan(None).unwrap();
        assert_eq!(out.swept, 1);
        assert!(!dir.path().join(".sandpool-tmp-1-2").exists());
        assert!(out.may_exist("a.json"));
        assert!(!out.may_exist("b.json"));
        assert!(out.holds_json("a.json"));
    }

    #[test]
    fn an_atomic_write_replaces_the_target_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let out = OutDir::open(dir.path()).unwrap();
        out.write_atomic("x.json", b"[1]\n", 7).unwrap();
        out.write_atomic("x.json", b"[2]\n", 8).unwrap();
        assert_eq!(std::fs::read(dir.path().join("x.json")).unwrap(), b"[2]\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // A failed rename (the target is a non-empty folder) removes its temporary.
        std::fs::create_dir(dir.path().join("d.json")).unwrap();
        std::fs::write(dir.path().join("d.json/f"), b"").unwrap();
        assert!(out.write_atomic("d.json", b"{}", 9).is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
        out.probe_writable().unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn a_nested_output_is_written_beside_its_temporary_and_swept_there() {
        let dir = tempfile::tempdir().unwrap();
        let out = OutDir::open(dir.path()).unwrap();
        out.write_atomic("a/b/c.txt.json", b"{}\n", 1).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("a/b/c.txt.json")).unwrap(),
            b"{}\n"
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("a/b")).unwrap().count(),
            1
        );
        std::fs::write(dir.path().join("a/b/.sandpool-tmp-9-9"), b"half").unwrap();
        let mut out = OutDir::open(dir.path()).unwrap();
        out.scan(None).unwrap();
        assert_eq!(out.swept, 1);
        assert!(!dir.path().join("a/b/.sandpool-tmp-9-9").exists());
        assert!(out.may_exist("a/b/c.txt.json"));
        assert!(!out.may_exist("a/b/d.txt.json"));
        assert!(out.holds_json("a/b/c.txt.json"));
    }
}
