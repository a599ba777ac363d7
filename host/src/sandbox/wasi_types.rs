//! The WASI preview 1 numbers the shim (`wasi.rs`) and the grant (`grant/`)
//! share: errno values, rights, open and descriptor flags, file types. One
//! set, spelled as in the `wasi_snapshot_preview1` witx.

/// The import module of WASI preview 1.
pub(crate) const MODULE: &str = "wasi_snapshot_preview1";

/// A WASI errno value (`SUCCESS` is 0), as the guest receives it.
pub(crate) type Errno = i32;

/// WASI errno values.
pub(crate) mod errno {
    use super::Errno;

    pub(crate) const SUCCESS: Errno = 0;
    pub(crate) const E2BIG: Errno = 1;
    pub(crate) const EACCES: Errno = 2;
    pub(crate) const EAGAIN: Errno = 6;
    pub(crate) const EBADF: Errno = 8;
    pub(crate) const EBUSY: Errno = 10;
    pub(crate) const EDQUOT: Errno = 19;
    pub(crate) const EEXIST: Errno = 20;
    pub(crate) const EFAULT: Errno = 21;
    pub(crate) const EFBIG: Errno = 22;
    pub(crate) const EINVAL: Errno = 28;
    pub(crate) const EIO: Errno = 29;
    pub(crate) const EISDIR: Errno = 31;
    pub(crate) const ELOOP: Errno = 32;
    pub(crate) const EMFILE: Errno = 33;
    pub(crate) const ENAMETOOLONG: Errno = 37;
    pub(crate) const ENFILE: Errno = 41;
    pub(crate) const ENOENT: Errno = 44;
    pub(crate) const ENOMEM: Errno = 48;
    pub(crate) const ENOSPC: Errno = 51;
    pub(crate) const ENOSYS: Errno = 52;
    pub(crate) const ENOTDIR: Errno = 54;
    pub(crate) const ENOTEMPTY: Errno = 55;
    pub(crate) const ENOTSUP: Errno = 58;
    pub(crate) const ENXIO: Errno = 60;
    pub(crate) const EOVERFLOW: Errno = 61;
    pub(crate) const EPERM: Errno = 63;
    pub(crate) const EROFS: Errno = 69;
    pub(crate) const ESPIPE: Errno = 70;
    pub(crate) const EXDEV: Errno = 75;
    pub(crate) const ENOTCAPABLE: Errno = 76;
}

// Rights.
pub(crate) const RIGHT_FD_DATASYNC: u64 = 1 << 0;
pub(crate) const RIGHT_FD_READ: u64 = 1 << 1;
pub(crate) const RIGHT_FD_WRITE: u64 = 1 << 6;
pub(crate) const RIGHT_FD_ALLOCATE: u64 = 1 << 8;
pub(crate) const RIGHT_FD_READDIR: u64 = 1 << 14;
pub(crate) const RIGHT_FD_FILESTAT_SET_SIZE: u64 = 1 << 22;
pub(crate) const ALL_RIGHTS: u64 = (1 << 29) - 1;
/// The rights that change a file.
pub(crate) const WRITE_RIGHTS: u64 =
    RIGHT_FD_WRITE | RIGHT_FD_ALLOCATE | RIGHT_FD_FILESTAT_SET_SIZE | RIGHT_FD_DATASYNC;

// `oflags`, `fdflags`, `lookupflags`.
pub(crate) const O_CREAT: i32 = 1;
pub(crate) const O_DIRECTORY: i32 = 2;
pub(crate) const O_EXCL: i32 = 4;
pub(crate) const O_TRUNC: i32 = 8;
pub(crate) const FDFLAG_APPEND: i32 = 1;
pub(crate) const LOOKUP_SYMLINK_FOLLOW: i32 = 1;

// File types.
pub(crate) const FILETYPE_UNKNOWN: u8 = 0;
pub(crate) const FILETYPE_BLOCK_DEVICE: u8 = 1;
pub(crate) const FILETYPE_CHARACTER_DEVICE: u8 = 2;
pub(crate) const FILETYPE_DIRECTORY: u8 = 3;
pub(crate) const FILETYPE_REGULAR_FILE: u8 = 4;
pub(crate) const FILETYPE_SOCKET_STREAM: u8 = 6;
pub(crate) const FILETYPE_SYMBOLIC_LINK: u8 = 7;
