//! The one place a wasm `Store` is set up: fresh per-task host state, the
//! memory limiter, the epoch deadline and the fuel budget, all from [`Limits`].

use wasmtime::Store;

use super::engine::ticks_for;
use super::module::CompiledModule;
use crate::error::Error;
use crate::limits::Limits;
use crate::sandbox::HostState;

/// Epoch deadline of a task without a timeout: far enough never to fire,
/// small enough that adding the current epoch cannot overflow.
const NO_DEADLINE: u64 = u64::MAX / 2;

/// A fresh store for one instance of `module` under `limits`: memory capped
/// at `limits.memory`, stdout/stderr capped at `limits.max_log`, a deadline of
/// `limits.timeout`, and, on a fuel-metered engine, `limits.fuel` (unbounded
/// when `None`). A fuel limit on an unmetered engine is the caller's to refuse.
pub(crate) fn new_store(
    module: &CompiledModule,
    limits: &Limits,
) -> Result<Store<HostState>, Error> {
    let memory_limit = usize::try_from(limits.memory).unwrap_or(usize::MAX);
    let mut store = Store::new(&module.engine, HostState::new(memory_limit, limits.max_log));
    store.limiter(|state| state);
    store.set_epoch_deadline(limits.timeout.map_or(NO_DEADLINE, ticks_for));
    crate::exec::abort::arm(&mut store, limits); // TaskHandle::abort (in process only)
    if module.fuel {
        store
            .set_fuel(limits.fuel.unwrap_or(u64::MAX))
            .map_err(|e| Error::Pool(format!("{e:#}")))?;
    }
    Ok(store)
}
