//! A command-line test task: reports the file it got, and misbehaves when
//! the file asks it to (`fail: message`, `trap`, `spin: rounds`).
use sandpool_guest::{FileInput, Json};
use serde::Serialize;

#[derive(Serialize)]
struct Probe {
    name: String,
    bytes: usize,
    fnv: u64,
}

fn probe(input: FileInput) -> Result<Json<Probe>, String> {
    let text = input.text();
    if let Some(message) = text.strip_prefix("fail:") {
        return Err(message.trim().to_string());
    }
    if text.starts_with("trap") {
        std::process::abort();
    }
    let mut fnv: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in &input.data {
        fnv = (fnv ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    if let Some(rounds) = text.strip_prefix("spin:") {
        let rounds: u64 = rounds
            .trim()
            .parse()
            .map_err(|e| format!("bad spin count: {e}"))?;
        for _ in 0..rounds {
            fnv = std::hint::black_box(fnv.rotate_left(5) ^ 0x9e37);
        }
    }
    Ok(Json(Probe {
        name: input.name,
        bytes: input.data.len(),
        fnv,
    }))
}
sandpool_guest::export_task!(probe);
