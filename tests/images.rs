//! The image example guest (`thumbnail`: PNG/JPEG → 128 px PNG with the
//! `image` crate) run by the real CLI over the bundled sample photos and a
//! corpus of damaged images (tests/data/images/, made by
//! scripts/make-sample-images.py): every good image gets a thumbnail that
//! fits and keeps its aspect ratio, every damaged one fails alone with its
//! own error record, and the decompression bombs fail fast, not hang.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Width and height from a PNG's IHDR chunk.
fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.len() < 24 || &bytes[..8] != b"\x89PNG\r\n\x1a\n" || &bytes[12..16] != b"IHDR" {
        return None;
    }
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    Some((be(&bytes[16..20]), be(&bytes[20..24])))
}

/// Width and height from a JPEG's frame header (SOF0..SOF2).
fn jpeg_size(bytes: &[u8]) -> Option<(u32, u32)> {
    let mut i = 2;
    while i + 9 < bytes.len() {
        if bytes[i] != 0xFF {
            return None;
        }
        let marker = bytes[i + 1];
        let len = usize::from(u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]));
        if (0xC0..=0xC2).contains(&marker) {
            let h = u16::from_be_bytes([bytes[i + 5], bytes[i + 6]]);
            let w = u16::from_be_bytes([bytes[i + 7], bytes[i + 8]]);
            return Some((u32::from(w), u32::from(h)));
        }
        i += 2 + len;
    }
    None
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn good_images(dir: &Path, rel: &str, found: &mut Vec<String>) {
    for e in std::fs::read_dir(dir.join(rel)).unwrap() {
        let e = e.unwrap();
        let name = format!("{rel}/{}", e.file_name().to_string_lossy());
        if e.file_type().unwrap().is_dir() {
            good_images(dir, &name, found);
        } else {
            found.push(name);
        }
    }
}

#[test]
fn photos_get_thumbnails_and_each_damaged_image_fails_alone() {
    let data = common::workspace().join("tests/data/images");
    let dir = tempfile::tempdir().unwrap();
    let (inputs, out) = (dir.path().join("in"), dir.path().join("out"));
    copy_tree(&data, &inputs);
    let started = Instant::now();
    let result = Command::new(env!("CARGO_BIN_EXE_sandpool"))
        .env(
            "SANDPOOL_CACHE_DIR",
            std::env::temp_dir().join("sandpool-images-test-cache"),
        )
        .arg("run")
        .arg(common::guest("thumbnail"))
        .arg(&inputs)
        .arg("-o")
        .arg(&out)
        .args(["--json", "--timeout", "20s"])
        .output()
        .unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(
        result.status.code(),
        Some(1),
        "some inputs failed: {stderr}"
    );
    // The bombs are refused from their headers: nowhere near the deadline.
    assert!(took < Duration::from_secs(15), "took {took:?}");

    let mut good = Vec::new();
    good_images(&inputs, "good", &mut good);
    assert!(good.len() >= 5, "{good:?}");
    for name in &good {
        let source = std::fs::read(inputs.join(name)).unwrap();
        let (w, h) = png_size(&source)
            .or_else(|| jpeg_size(&source))
            .unwrap_or_else(|| panic!("{name}: cannot read its size"));
        let thumb = std::fs::read(out.join(format!("{name}.png")))
            .unwrap_or_else(|e| panic!("{name}: no thumbnail: {e}"));
        let (tw, th) = png_size(&thumb).unwrap_or_else(|| panic!("{name}.png is not a PNG"));
        assert!(tw <= 128 && th <= 128, "{name}: {tw}x{th}");
        if w <= 128 && h <= 128 {
            assert_eq!((tw, th), (w, h), "{name}: a small image is not enlarged");
        } else {
            assert_eq!(tw.max(th), 128, "{name}: {w}x{h} -> {tw}x{th}");
            let (ratio, thumb_ratio) = (w as f64 / h as f64, tw as f64 / th as f64);
            assert!(
                (ratio - thumb_ratio).abs() / ratio < 0.03,
                "{name}: aspect {ratio} became {thumb_ratio}"
            );
        }
        assert!(!out.join(format!("{name}.error.json")).exists());
    }

    let mut damaged: Vec<String> = std::fs::read_dir(inputs.join("damaged"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    damaged.sort();
    assert!(damaged.len() >= 8, "{damaged:?}");
    for (index, name) in damaged.iter().enumerate() {
        let path = out.join(format!("damaged/{name}.error.json"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{name}: no error record: {e}"));
        let record: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(record["input"], format!("damaged/{name}"), "{record}");
        let message = record["message"].as_str().unwrap();
        assert!(message.contains(name.as_str()), "{message}");
        // Inputs are numbered in sorted order (`damaged/` is listed first,
        // its files by name), whatever order the workers finish in.
        assert_eq!(record["index"], index, "{record}");
        assert!(message.contains(&format!("input #{index} ")), "{message}");
        // The guest reports the damage, or the host stops it at the memory cap.
        assert!(
            record["error"] == "guest" || record["error"] == "memory_limit",
            "{name}: {record}"
        );
        assert!(!out.join(format!("damaged/{name}.png")).exists());
    }
    let expect = [
        ("bomb-dimensions.png", "limit"),
        ("bomb-memory.png", "limit"),
        ("bomb-dimensions.jpg", "limit"),
        ("bad-crc.png", "CRC"),
        ("notes.png", "not a PNG or JPEG"),
        ("empty.png", "not a PNG or JPEG"),
    ];
    for (name, says) in expect {
        let record: serde_json::Value = serde_json::from_slice(
            &std::fs::read(out.join(format!("damaged/{name}.error.json"))).unwrap(),
        )
        .unwrap();
        assert!(
            record["message"].as_str().unwrap().contains(says),
            "{name}: {record}"
        );
    }
    let summary: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
    assert_eq!(
        summary["succeeded"].as_u64(),
        Some(good.len() as u64),
        "{summary}"
    );
    assert_eq!(
        summary["failed"].as_u64(),
        Some(damaged.len() as u64),
        "{summary}"
    );
}
