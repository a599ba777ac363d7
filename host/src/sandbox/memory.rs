//! Reading and writing guest linear memory from host functions, bounds
//! checked: every guest pointer is an untrusted `i32`, and every access
//! outside the memory is `EFAULT` for the guest, never a host panic.

use wasmtime::{Caller, Extern};

use super::state::HostState;
use super::wasi_types::Errno;
use super::wasi_types::errno::{EFAULT, EINVAL};

/// The most iovecs one read or write may pass.
const MAX_IOVS: usize = 1024;

/// The caller's exported memory and its host state, borrowed together.
pub(crate) fn memory<'a>(
    caller: &'a mut Caller<'_, HostState>,
) -> Result<(&'a mut [u8], &'a mut HostState), Errno> {
    match caller.get_export(sandpool_guest::abi::EXPORT_MEMORY) {
        Some(Extern::Memory(m)) => Ok(m.data_and_store_mut(caller)),
        _ => Err(EFAULT),
    }
}

/// The `len` bytes at guest address `ptr`.
pub(crate) fn slice(mem: &[u8], ptr: i32, len: usize) -> Result<&[u8], Errno> {
    let start = ptr as u32 as usize;
    let end = start.checked_add(len).ok_or(EFAULT)?;
    mem.get(start..end).ok_or(EFAULT)
}

/// The `len` bytes at guest address `ptr`, writable.
pub(crate) fn slice_mut(mem: &mut [u8], ptr: i32, len: usize) -> Result<&mut [u8], Errno> {
    let start = ptr as u32 as usize;
    let end = start.checked_add(len).ok_or(EFAULT)?;
    mem.get_mut(start..end).ok_or(EFAULT)
}

/// Copies `bytes` to guest address `ptr`.
pub(crate) fn put(mem: &mut [u8], ptr: i32, bytes: &[u8]) -> Result<(), Errno> {
    slice_mut(mem, ptr, bytes.len())?.copy_from_slice(bytes);
    Ok(())
}

/// Writes a little-endian `u32` at guest address `ptr`.
pub(crate) fn put_u32(mem: &mut [u8], ptr: i32, value: u32) -> Result<(), Errno> {
    put(mem, ptr, &value.to_le_bytes())
}

/// Writes a little-endian `u64` at guest address `ptr`.
pub(crate) fn put_u64(mem: &mut [u8], ptr: i32, value: u64) -> Result<(), Errno> {
    put(mem, ptr, &value.to_le_bytes())
}

/// The `(buf, len)` pairs of an iovec array in guest memory, each checked
/// to lie inside it (so `&mem[buf..buf + len]` cannot panic).
pub(crate) fn iovecs(mem: &[u8], iovs: i32, count: i32) -> Result<Vec<(usize, usize)>, Errno> {
    let count = count as u32 as usize;
    if count > MAX_IOVS {
        return Err(EINVAL);
    }
    let raw = slice(mem, iovs, count * 8)?;
    let mut out = Vec::with_capacity(count);
    for iov in raw.chunks_exact(8) {
        let buf = u32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]) as usize;
        let len = u32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]) as usize;
        let end = buf.checked_add(len).ok_or(EFAULT)?;
        if end > mem.len() {
            return Err(EFAULT);
        }
        out.push((buf, len));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accesses_outside_memory_are_efault_not_a_panic() {
        let mut mem = vec![0u8; 16];
        assert_eq!(slice(&mem, 12, 4).map(<[u8]>::len), Ok(4));
        assert_eq!(slice(&mem, 13, 4), Err(EFAULT));
        assert_eq!(slice(&mem, -1, 1), Err(EFAULT));
        assert_eq!(put_u64(&mut mem, 9, 1), Err(EFAULT));
        assert_eq!(put_u32(&mut mem, 12, 7), Ok(()));
        assert_eq!(&mem[12..], &7u32.to_le_bytes());
    }

    #[test]
    fn iovecs_are_checked_against_memory() {
        let mut mem = vec![0u8; 64];
        put_u32(&mut mem, 0, 32).unwrap();
        put_u32(&mut mem, 4, 8).unwrap();
        assert_eq!(iovecs(&mem, 0, 1), Ok(vec![(32, 8)]));
        put_u32(&mut mem, 4, 40).unwrap();
        assert_eq!(iovecs(&mem, 0, 1), Err(EFAULT));
        assert_eq!(iovecs(&mem, 0, 2000), Err(EINVAL));
    }
}
