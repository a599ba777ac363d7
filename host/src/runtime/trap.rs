//! Why a task stopped: a wasmtime error turned into the task error that
//! explains it (deadline, fuel, memory limit, guest panic, `proc_exit`, or a
//! trap with its wasm backtrace).

use wasmtime::{Store, Trap, WasmBacktrace};

use crate::error::{Error, TaskRef};
use crate::limits::Limits;
use crate::sandbox::{GuestExit, HostState};

/// Wasm backtrace lines kept in a trap message.
const MAX_BACKTRACE_LINES: usize = 12;

/// The task's deadline or fuel budget, if that is what stopped it (for
/// modules and components alike).
pub(crate) fn limit_reached(
    err: &wasmtime::Error,
    limits: &Limits,
    task: &TaskRef,
) -> Option<Error> {
    match err.downcast_ref::<Trap>().copied() {
        Some(Trap::Interrupt) => Some(Error::Timeout {
            task: task.clone(),
            limit: limits.timeout.unwrap_or_default(),
        }),
        Some(Trap::OutOfFuel) => Some(Error::FuelExhausted {
            task: task.clone(),
            limit: limits.fuel.unwrap_or(u64::MAX),
        }),
        _ => None,
    }
}

/// Turns an error from wasmtime into the task error that explains it.
pub(crate) fn classify(
    store: &mut Store<HostState>,
    limits: &Limits,
    task: &TaskRef,
    err: wasmtime::Error,
) -> Error {
    if let Some(stopped) = limit_reached(&err, limits, task) {
        return stopped;
    }
    let task = task.clone();
    let trap = err.downcast_ref::<Trap>().copied();
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
