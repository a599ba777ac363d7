//! The capability names a module declares it needs: the custom section
//! `sandpool.capabilities` (names each ended by `\n` or NUL, so sections
//! from several object files concatenate), read without running anything.

use super::{MAX_NAME, valid_name};

/// The custom section that lists the capabilities a module may call.
pub(crate) const SECTION: &str = "sandpool.capabilities";

/// The most names one module may declare.
const MAX_NAMES: usize = 256;

/// The names `wasm` (binary or text) declares, sorted and deduplicated.
/// A module without the section declares none.
pub(crate) fn declared_names(wasm: &[u8]) -> Result<Vec<String>, String> {
    let binary;
    let bytes = if wasm.starts_with(b"\0asm") {
        wasm
    } else {
        binary = wat::parse_bytes(wasm).map_err(|e| format!("{e}"))?;
        &binary[..]
    };
    let mut names = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| format!("{e}"))?;
        if let wasmparser::Payload::CustomSection(section) = payload
            && section.name() == SECTION
        {
            parse_section(section.data(), &mut names)?;
        }
    }
    names.sort();
    names.dedup();
    if names.len() > MAX_NAMES {
        return Err(format!(
            "its `{SECTION}` section declares {} capabilities, over the limit of {MAX_NAMES}",
            names.len()
        ));
    }
    Ok(names)
}

fn parse_section(data: &[u8], names: &mut Vec<String>) -> Result<(), String> {
    for raw in data.split(|&b| b == b'\n' || b == 0) {
        let Ok(name) = std::str::from_utf8(raw) else {
            return Err(format!(
                "its `{SECTION}` section holds a name that is not UTF-8: {:?}",
                String::from_utf8_lossy(raw)
            ));
        };
        let name = name.trim();
        if name.is_empty() {
            continue;
        }
        if !valid_name(name) {
            let shown: String = name.chars().take(MAX_NAME).collect();
            return Err(format!(
                "its `{SECTION}` section declares `{shown}`, not a capability name \
                 (1 to {MAX_NAME} ASCII letters, digits, `_`, `.`, `:` or `-`)"
            ));
        }
        names.push(name.to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_from_every_section_sorted_and_deduplicated() {
        let wat = r#"(module
            (@custom "sandpool.capabilities" "model.classify\n")
            (@custom "sandpool.capabilities" "db.lookup\n\00model.classify\n"))"#;
        assert_eq!(
            declared_names(wat.as_bytes()).unwrap(),
            ["db.lookup", "model.classify"]
        );
    }

    #[test]
    fn a_module_without_the_section_declares_nothing() {
        assert!(declared_names(b"(module)").unwrap().is_empty());
    }

    #[test]
    fn a_bad_name_is_refused_with_the_name() {
        let wat = r#"(module (@custom "sandpool.capabilities" "db lookup\n"))"#;
        let err = declared_names(wat.as_bytes()).unwrap_err();
        assert!(err.contains("`db lookup`"), "{err}");
        let wat = r#"(module (@custom "sandpool.capabilities" "\ff\n"))"#;
        assert!(
            declared_names(wat.as_bytes())
                .unwrap_err()
                .contains("UTF-8")
        );
    }
}
