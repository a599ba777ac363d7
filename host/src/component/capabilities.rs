//! The `sandpool:task/capabilities` import (wit/task.wit): a component's
//! host capability calls, answered through the same per-task
//! [`CallState::dispatch`](crate::capability::imports::CallState::dispatch)
//! as the ABI v1 `sandpool_v1.call` import, so both enforce the same caps
//! with the same messages. Which names a component may call is decided at
//! load from its `sandpool.capabilities` custom section (the same section
//! a module carries; scripts/build-components.sh stores a task folder's
//! `capabilities.txt` there), so a component that declares none can call
//! none, and a pool that does not grant a declared name refuses the task.

use wasmtime::StoreContextMut;
use wasmtime::component::Linker;

use super::wasi::ComponentState;
use crate::capability::imports::CallFailure;

/// The interface's name, with the package version of wit/task.wit.
pub(crate) const INTERFACE: &str = "sandpool:task/capabilities@0.1.0";

/// The interface's one function.
const FUNC_CALL: &str = "call";

/// Adds the capabilities interface to `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<ComponentState>) -> wasmtime::Result<()> {
    let mut instance = linker.instance(INTERFACE)?;
    instance.func_wrap(
        FUNC_CALL,
        |mut store: StoreContextMut<'_, ComponentState>,
         (name, request): (String, Vec<u8>)|
         -> wasmtime::Result<(Vec<u8>,)> {
            let Some(calls) = store.data_mut().calls.as_deref_mut() else {
                return Err(wasmtime::Error::new(CallFailure {
                    capability: name,
                    reason: "this pool grants no capabilities (PoolBuilder::capability)".into(),
                }));
            };
            let response = calls
                .dispatch(&name, &request)
                .map_err(wasmtime::Error::new)?;
            Ok((response,))
        },
    )
}
