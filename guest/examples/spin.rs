//! Spins for a caller-chosen number of rounds and returns the input's identity
//! with a checksum, so tests can check results stay matched to their inputs.
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Spin {
    id: u64,
    rounds: u32,
}

#[derive(Serialize)]
struct Spun {
    id: u64,
    checksum: u64,
}

fn spin(input: Spin) -> Result<Spun, String> {
    let mut x = input.id ^ 0x9e37_79b9_7f4a_7c15;
    for _ in 0..input.rounds {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        x = std::hint::black_box(x);
    }
    Ok(Spun {
        id: input.id,
        checksum: x,
    })
}
sandpool_guest::export_task!(spin);
