//! `sandpool inspect`.
use std::process::ExitCode;

pub fn main(_args: crate::args::InspectArgs) -> ExitCode {
    ExitCode::from(2)
}
