//! The serialization boundary on the host side: bincode (configured in
//! `sandpool_guest::abi`) behind two functions, so swapping the format is a
//! one-file change. Untrusted bytes are always decoded with a size limit.

use serde::{Serialize, de::DeserializeOwned};

use crate::error::{Error, TaskRef};

/// The most any single decoded value may claim to allocate (1 GiB).
const DECODE_LIMIT: usize = 1 << 30;

/// Encodes a task input (or any boundary value).
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T, task: &TaskRef) -> Result<Vec<u8>, Error> {
    bincode::serde::encode_to_vec(value, sandpool_guest::abi::config()).map_err(|e| Error::Encode {
        task: task.clone(),
        reason: e.to_string(),
    })
}

/// Decodes a task output; the whole buffer must be one value.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], task: &TaskRef) -> Result<T, Error> {
    let config = sandpool_guest::abi::config().with_limit::<DECODE_LIMIT>();
    let fail = |reason: String| Error::Decode {
        task: task.clone(),
        what: "output",
        reason,
    };
    let (value, read) =
        bincode::serde::decode_from_slice(bytes, config).map_err(|e| fail(e.to_string()))?;
    if read != bytes.len() {
        return Err(fail(format!(
            "{} trailing bytes after the value",
            bytes.len() - read
        )));
    }
    Ok(value)
}

/// Appends the encoding of a protocol message (process isolation frames) to `out`.
pub(crate) fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    bincode::serde::encode_into_std_write(value, out, sandpool_guest::abi::config())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Decodes a protocol message; the whole buffer must be one value, decoded with the size limit.
pub(crate) fn decode_exact<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let config = sandpool_guest::abi::config().with_limit::<DECODE_LIMIT>();
    let (value, read) =
        bincode::serde::decode_from_slice(bytes, config).map_err(|e| e.to_string())?;
    if read != bytes.len() {
        return Err(format!(
            "{} trailing bytes after the message",
            bytes.len() - read
        ));
    }
    Ok(value)
}

/// Decodes the first value of `bytes` and ignores what follows (a message's leading fields).
pub(crate) fn decode_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let config = sandpool_guest::abi::config().with_limit::<DECODE_LIMIT>();
    bincode::serde::decode_from_slice(bytes, config)
        .map(|(value, _)| value)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task() -> TaskRef {
        TaskRef::new("t", 0)
    }

    #[test]
    fn round_trips_a_value() {
        let bytes = encode(&("a", 1u32, vec![2u8]), &task()).unwrap();
        let back: (String, u32, Vec<u8>) = decode(&bytes, &task()).unwrap();
        assert_eq!(back, ("a".into(), 1, vec![2]));
    }

    #[test]
    fn rejects_trailing_bytes() {
        let err = decode::<u8>(&[1, 2], &task()).unwrap_err();
        assert!(err.to_string().contains("trailing"), "{err}");
    }

    #[test]
    fn rejects_a_length_claiming_more_than_the_limit() {
        // A varint length of 2^40 for a Vec<u8>, with no bytes behind it.
        let mut bytes = vec![253u8];
        bytes.extend_from_slice(&(1u64 << 40).to_le_bytes());
        let err = decode::<Vec<u8>>(&bytes, &task()).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Decode);
    }
}
