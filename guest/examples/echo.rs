//! Returns its input bytes unchanged (the boundary's round trip, nothing else).
fn echo(bytes: serde_bytes::ByteBuf) -> Result<serde_bytes::ByteBuf, std::convert::Infallible> {
    Ok(bytes)
}
sandpool_guest::export_task!(echo);
