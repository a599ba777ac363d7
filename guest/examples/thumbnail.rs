//! An image task for `sandpool run`: decodes a PNG or JPEG photo, shrinks it
//! to fit 128×128 (aspect ratio kept, never enlarged) and writes the
//! thumbnail as `{input}.png` (a raw output with extension `png`).
//!
//! Damaged inputs fail alone with a guest error naming what is wrong: an
//! unknown format, a truncated file, a bad checksum. An image that declares
//! more than 8,192 pixels a side, or would need more than 64 MiB decoded, is
//! refused from its header before its pixels are allocated (a decompression
//! bomb), and the host's memory cap stops any that slips past that.
//!
//! Built by `scripts/build-guests.sh` (the `images` feature).
use std::io::Cursor;

use image::{ImageFormat, ImageReader, Limits, imageops::FilterType};
use sandpool_guest::FileInput;
use sandpool_guest::output::Output;

/// Largest side of a thumbnail, in pixels.
const SIDE: u32 = 128;
/// Largest side of an image accepted, in pixels.
const MAX_SIDE: u32 = 8192;
/// Most bytes a decoder may allocate.
const MAX_ALLOC: u64 = 64 << 20;

fn thumbnail(input: FileInput) -> Result<Output, String> {
    let name = &input.name;
    let mut reader = ImageReader::new(Cursor::new(&input.data))
        .with_guessed_format()
        .map_err(|e| format!("{name}: cannot read: {e}"))?;
    match reader.format() {
        Some(ImageFormat::Png | ImageFormat::Jpeg) => {}
        Some(other) => {
            return Err(format!(
                "{name}: {other:?} images are not supported (PNG or JPEG only)"
            ));
        }
        None => return Err(format!("{name}: not a PNG or JPEG image (unknown format)")),
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let image = reader
        .decode()
        .map_err(|e| format!("{name}: cannot decode: {e}"))?;
    let small = if image.width() <= SIDE && image.height() <= SIDE {
        image
    } else {
        image.resize(SIDE, SIDE, FilterType::Triangle)
    };
    let mut png = Vec::new();
    small
        .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
        .map_err(|e| format!("{name}: cannot encode the thumbnail: {e}"))?;
    Ok(Output::bytes("png", png))
}

sandpool_guest::export_task!(thumbnail);
