//! Host errors as WASI errno values: the mapping from Linux `errno` (and
//! `std::io::Error`) to what a guest is told, and the helpers that return it.

use super::wasi_types::Errno;
use super::wasi_types::errno::*;

/// The calling thread's last host `errno` (`EIO` if there is none).
pub(crate) fn last_errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// The WASI errno for a host errno met while resolving a guest path:
/// escaping the grant (`EXDEV` from `RESOLVE_BENEATH`) is `ENOTCAPABLE`.
pub(crate) fn from_path_errno(host: i32) -> Errno {
    match host {
        libc::EXDEV => ENOTCAPABLE,
        other => from_host(other),
    }
}

/// The WASI errno for a host errno; one WASI has no name for is `EIO`.
pub(crate) fn from_host(host: i32) -> Errno {
    match host {
        libc::E2BIG => E2BIG,
        libc::EACCES => EACCES,
        libc::EAGAIN => EAGAIN,
        libc::EBADF => EBADF,
        libc::EBUSY => EBUSY,
        libc::EDQUOT => EDQUOT,
        libc::EEXIST => EEXIST,
        libc::EFAULT => EFAULT,
        libc::EFBIG => EFBIG,
        libc::EINVAL => EINVAL,
        libc::EISDIR => EISDIR,
        libc::ELOOP => ELOOP,
        libc::EMFILE => EMFILE,
        libc::ENAMETOOLONG => ENAMETOOLONG,
        libc::ENFILE => ENFILE,
        libc::ENOENT => ENOENT,
        libc::ENOMEM => ENOMEM,
        libc::ENOSPC => ENOSPC,
        libc::ENOSYS => ENOSYS,
        libc::ENOTDIR => ENOTDIR,
        libc::ENOTEMPTY => ENOTEMPTY,
        libc::ENXIO => ENXIO,
        libc::EOVERFLOW => EOVERFLOW,
        libc::EPERM => EPERM,
        libc::EROFS => EROFS,
        libc::ESPIPE => ESPIPE,
        libc::EXDEV => EXDEV,
        _ => EIO,
    }
}

/// The WASI errno for an I/O error.
pub(crate) fn from_io(e: &std::io::Error) -> Errno {
    e.raw_os_error().map(from_host).unwrap_or(EIO)
}

/// `Ok` for a libc return value that is not negative, else the WASI errno of `errno`.
pub(crate) fn check(ret: libc::c_int) -> Result<(), Errno> {
    if ret < 0 {
        Err(from_host(last_errno()))
    } else {
        Ok(())
    }
}

/// The errno a host function returns to the guest for `result`.
pub(crate) fn errno_of(result: Result<(), Errno>) -> Errno {
    match result {
        Ok(()) => SUCCESS,
        Err(errno) => errno,
    }
}
