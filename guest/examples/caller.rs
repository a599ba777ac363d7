//! Calls host capabilities as its input says (for tests/capabilities.rs
//! and benches/capability.rs): a value through `test.echo`, a loop of calls,
//! raw bytes to any name, a call that blocks in the host.
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

sandpool_guest::capabilities!("test.echo", "test.block");
sandpool_guest::capabilities!("test.fail");

/// What to call.
#[derive(Deserialize)]
enum Plan {
    /// Call `test.echo` with these bytes once; return the response.
    Echo(ByteBuf),
    /// Call `test.echo` with `bytes` `times` times; return how many answered.
    Repeat { times: u32, bytes: ByteBuf },
    /// Call `name` with raw (possibly malformed) request bytes; return the raw response.
    Raw { name: String, bytes: ByteBuf },
    /// Call `test.block` (a handler that never returns).
    Block,
    /// Call `test.fail` (a handler that errors or panics, as `how` says).
    Fail(String),
}

#[derive(Serialize)]
enum Answer {
    Bytes(ByteBuf),
    Count(u32),
}

fn run(plan: Plan) -> Result<Answer, String> {
    let err = |e: sandpool_guest::CallError| e.to_string();
    Ok(match plan {
        Plan::Echo(bytes) => Answer::Bytes(sandpool_guest::call("test.echo", &bytes).map_err(err)?),
        Plan::Repeat { times, bytes } => {
            let mut n = 0;
            for _ in 0..times {
                let back: ByteBuf = sandpool_guest::call("test.echo", &bytes).map_err(err)?;
                if back == bytes {
                    n += 1;
                }
            }
            Answer::Count(n)
        }
        Plan::Raw { name, bytes } => Answer::Bytes(ByteBuf::from(
            sandpool_guest::call::call_raw(&name, &bytes).map_err(err)?,
        )),
        Plan::Block => Answer::Bytes(sandpool_guest::call("test.block", &()).map_err(err)?),
        Plan::Fail(how) => Answer::Bytes(sandpool_guest::call("test.fail", &how).map_err(err)?),
    })
}

sandpool_guest::export_task!(run);
