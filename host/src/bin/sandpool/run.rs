//! `sandpool run`.
use std::process::ExitCode;

pub fn main(_args: crate::args::RunArgs) -> ExitCode {
    ExitCode::from(2)
}
