//! A guest that misbehaves on request, for the host's fault-containment tests.
use serde::Deserialize;

#[derive(Deserialize)]
enum Mode {
    /// Behave: return the number.
    Ok(u64),
    /// Execute `unreachable`.
    Trap,
    /// `panic!` with a message.
    Panic(String),
    /// Return `Err(message)`.
    Fail(String),
    /// Loop forever.
    Loop,
    /// Allocate until memory runs out.
    MemoryBomb,
    /// Return an output of this many bytes.
    HugeOutput(u32),
    /// Print this many bytes to stdout and stderr, then return.
    Print(u32),
    /// Recurse without end.
    Recurse,
}

#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let pad = std::hint::black_box([depth; 16]);
    recurse(pad[3] + 1) + pad[7]
}

fn hostile(mode: Mode) -> Result<serde_bytes::ByteBuf, String> {
    match mode {
        Mode::Ok(n) => Ok(serde_bytes::ByteBuf::from(n.to_le_bytes().to_vec())),
        Mode::Trap => std::process::abort(),
        Mode::Panic(message) => panic!("{message}"),
        Mode::Fail(message) => Err(message),
        Mode::Loop => loop {
            std::hint::black_box(());
        },
        Mode::MemoryBomb => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        Mode::HugeOutput(n) => Ok(serde_bytes::ByteBuf::from(vec![7u8; n as usize])),
        Mode::Print(n) => {
            let line = "x".repeat(99);
            for _ in 0..n / 100 {
                println!("{line}");
                eprintln!("{line}");
            }
            Ok(serde_bytes::ByteBuf::new())
        }
        Mode::Recurse => Ok(serde_bytes::ByteBuf::from(
            recurse(0).to_le_bytes().to_vec(),
        )),
    }
}
sandpool_guest::export_task!(hostile);
