//! The one system call that confines a guest's paths: `openat2(2)` with
//! `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`, so the kernel refuses `..`,
//! absolute paths and symbolic links that lead out of the starting directory.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use crate::sandbox::errno::last_errno;

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}
const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_BENEATH: u64 = 0x08;

/// `openat2(dir, path, flags, mode)` confined beneath `dir`; the host errno on failure.
pub(super) fn openat2(
    dir: RawFd,
    path: &std::ffi::CStr,
    flags: i32,
    mode: u32,
) -> Result<OwnedFd, i32> {
    let how = OpenHow {
        flags: flags as u32 as u64,
        mode: u64::from(mode),
        resolve: RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
    };
    loop {
        // SAFETY: `path` is NUL-terminated and `how` is a valid `struct open_how`
        // of the size passed; both outlive the call.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir,
                path.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if fd >= 0 {
            // SAFETY: the kernel just returned this descriptor to us alone.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
        }
        let errno = last_errno();
        if errno != libc::EINTR {
            return Err(errno);
        }
    }
}
