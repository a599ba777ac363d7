//! Writes the output kind its input asks for (the tests of `sandpool run`'s
//! output kinds). The input's text is a command:
//!
//! - `json` (or anything not below): `{"name": ..., "bytes": N}`;
//! - `bytes EXT TEXT...`: raw bytes `TEXT...` with extension `EXT`;
//! - `files N SIZE`: N files `part-0.bin` .. each of SIZE bytes, byte `i` of
//!   file `f` being `(f + i) % 251`;
//! - `error`: a guest error.
use sandpool_guest::FileInput;
use sandpool_guest::output::Output;

fn outputs(input: FileInput) -> Result<Output, String> {
    let text = input.text().into_owned();
    // A JSON Lines input is the line itself: a JSON string, quotes and all.
    let mut words = text.trim().trim_matches('"').split_whitespace();
    match words.next() {
        Some("bytes") => {
            let ext = words.next().unwrap_or("");
            let rest: Vec<&str> = words.collect();
            Ok(Output::bytes(ext, rest.join(" ").into_bytes()))
        }
        Some("files") => {
            let n: usize = words.next().and_then(|w| w.parse().ok()).unwrap_or(1);
            let size: usize = words.next().and_then(|w| w.parse().ok()).unwrap_or(1);
            Ok(Output::files((0..n).map(|f| {
                let data = (0..size).map(|i| ((f + i) % 251) as u8).collect();
                (format!("part-{f}.bin"), data)
            })))
        }
        Some("error") => Err(format!("{} asked for an error", input.name)),
        _ => Output::json(&serde_json::json!({"name": input.name, "bytes": input.data.len()})),
    }
}

sandpool_guest::export_task!(outputs);
