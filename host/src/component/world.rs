//! What a component imports and exports at its top level (its world), read
//! with wasmparser without compiling: for `sandpool inspect` and for the
//! load-time check that a component imports nothing but WASI 0.2.

use wasmparser::{ComponentExternalKind, ComponentTypeRef, Parser, Payload};

/// One import or export of a component: its name and kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WorldItem {
    pub name: String,
    pub kind: &'static str,
}

/// A component's top-level imports and exports.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct World {
    pub imports: Vec<WorldItem>,
    pub exports: Vec<WorldItem>,
    /// Core modules nested anywhere in the component.
    pub core_modules: usize,
}

fn import_kind(ty: &ComponentTypeRef) -> &'static str {
    match ty {
        ComponentTypeRef::Module(_) => "module",
        ComponentTypeRef::Func(_) => "func",
        ComponentTypeRef::Value(_) => "value",
        ComponentTypeRef::Type(_) => "type",
        ComponentTypeRef::Instance(_) => "instance",
        ComponentTypeRef::Component(_) => "component",
    }
}

fn export_kind(kind: ComponentExternalKind) -> &'static str {
    match kind {
        ComponentExternalKind::Module => "module",
        ComponentExternalKind::Func => "func",
        ComponentExternalKind::Value => "value",
        ComponentExternalKind::Type => "type",
        ComponentExternalKind::Instance => "instance",
        ComponentExternalKind::Component => "component",
    }
}

/// Reads the world of the component in `wasm`.
pub(crate) fn read(wasm: &[u8]) -> Result<World, String> {
    let mut world = World::default();
    // Nested modules and components are parsed inline, each closed by an `End`.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(|e| format!("{e}"))?;
        match payload {
            Payload::ModuleSection { .. } => {
                world.core_modules += 1;
                depth += 1;
            }
            Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    let import = import.map_err(|e| format!("{e}"))?;
                    world.imports.push(WorldItem {
                        name: import.name.name.to_string(),
                        kind: import_kind(&import.ty),
                    });
                }
            }
            Payload::ComponentExportSection(reader) if depth == 0 => {
                for export in reader {
                    let export = export.map_err(|e| format!("{e}"))?;
                    world.exports.push(WorldItem {
                        name: export.name.name.to_string(),
                        kind: export_kind(export.kind),
                    });
                }
            }
            _ => {}
        }
    }
    Ok(world)
}

/// Whether sandpool provides a component import: WASI 0.2 interfaces and
/// `sandpool:task/capabilities` (`capabilities.rs`).
pub(crate) fn is_provided_import(name: &str) -> bool {
    name.starts_with("wasi:") || name == super::capabilities::INTERFACE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_component_world_lists_its_imports_and_exports() {
        let wasm = wat::parse_str(
            r#"(component
                 (import "wasi:cli/environment@0.2.0" (instance))
                 (core module $m (func (export "f")))
                 (core instance $i (instantiate $m))
                 (func $run (canon lift (core func $i "f")))
                 (export "run" (func $run)))"#,
        )
        .expect("valid component text");
        let world = read(&wasm).expect("parses");
        assert_eq!(world.imports.len(), 1);
        assert_eq!(world.imports[0].name, "wasi:cli/environment@0.2.0");
        assert_eq!(world.imports[0].kind, "instance");
        assert_eq!(
            world.exports,
            vec![WorldItem {
                name: "run".into(),
                kind: "func"
            }]
        );
        assert_eq!(world.core_modules, 1);
        assert!(is_provided_import(&world.imports[0].name));
        assert!(!is_provided_import("env:host/secrets"));
        assert!(is_provided_import("sandpool:task/capabilities@0.1.0"));
        assert!(!is_provided_import("sandpool:task/capabilities@9.0.0"));
    }
}
