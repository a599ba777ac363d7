//! The `caller` guest's boundary types (`guest/examples/caller.rs`), shared
//! by the capability tests.
#![allow(dead_code)]

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use sandpool::{Isolation, Task};

/// The `caller` guest's input.
#[derive(Serialize)]
pub enum Plan {
    Echo(ByteBuf),
    Repeat { times: u32, bytes: ByteBuf },
    Raw { name: String, bytes: ByteBuf },
    Block,
    Fail(String),
}

/// The `caller` guest's output.
#[derive(Deserialize, Debug, PartialEq)]
pub enum Answer {
    Bytes(ByteBuf),
    Count(u32),
}

/// Both isolation levels, which must behave the same.
pub const LEVELS: [Isolation; 2] = [Isolation::Instance, Isolation::Process];

/// The built `caller` guest.
pub fn caller() -> Task<Plan, Answer> {
    Task::from_file(crate::common::guest("caller")).expect("the caller guest loads")
}
