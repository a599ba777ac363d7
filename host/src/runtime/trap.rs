//! Why a task stopped: a wasmtime error turned into the task error that
//! explains it (deadline, fuel, memory limit, guest panic, `proc_exit`, or a
//! trap with its wasm backtrace).

use wasmtime::{Store, Trap, WasmBacktrace};

use crate::error::{Error, TaskRef};
use crate::limits::Limits;
use crate::sandbox::{GuestExit, HostState};

/// Wasm backtrace lines kept in a trap message.
const MAX_BACKTRACE_LINES: usize = 12;

/// Turns an error from wasmtime into the task error that explains it.
pub(crate) fn classify(
    store: &mut Store<HostState>,
    limits: &Limits,
    task: &TaskRef,
    err: wasmtime::Error,
) -> Error {
    let task = task.clone();
    let trap = err.downcast_ref::<Trap>().copied();
    if trap == Some(Trap::Interrupt) {
        return Error::Timeout {
            task,
            limit: limits.timeout.unwrap_or_default(),
        };
    }
    if trap == Some(Trap::OutOfFuel) {
        return Error::FuelExhausted {
            task,
            limit: limits.fuel.unwrap_or(u64::MAX),
        };
    }
    if let Some(failure) = err.downcast_ref::<crate::capability::imports::CallFailure>() {
        return Error::Capability {
            task,
            capability: failure.capability.clone(),
            reason: failure.reason.clone(),
        };
    }
    let state = store.data_mut();
    if state.memory_denied {
        return Error::MemoryLimit {
            task,
            limit: limits.memory,
        };
    }
    if let Some(message) = state.panic.take() {
        return Error::Panic { task, message };
    }
    if let Some(exit) = err.downcast_ref::<GuestExit>() {
        return Error::Trap {
            task,
            message: exit.to_string(),
        };
    }
    let mut message = match trap {
        Some(trap) => trap.to_string(),
        None => format!("{err:#}"),
    };
    if let Some(backtrace) = err.downcast_ref::<WasmBacktrace>() {
        let frames = backtrace.to_string();
        let lines: Vec<&str> = frames.lines().filter(|l| !l.trim().is_empty()).collect();
        for line in lines.iter().take(MAX_BACKTRACE_LINES) {
            message.push('\n');
            message.push_str(line);
        }
        if lines.len() > MAX_BACKTRACE_LINES {
            message.push_str(&format!(
                "\n    ... {} more frames",
                lines.len() - MAX_BACKTRACE_LINES
            ));
        }
    }
    Error::Trap { task, message }
}
