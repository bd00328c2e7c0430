//! Whether a manifest describes its bytes: [`Manifest::check_against`] analyzes them
//! again, with the manifest's own definitions and dependencies as declarations.

use alloc::string::String;

use super::{AnalyzeOptions, Declared, analyze_with};
use crate::Manifest;

impl Manifest {
    /// Checks that this manifest describes `wasm`: analyzing the bytes, with this
    /// manifest's global definitions and its functions' dependencies as declarations,
    /// must give this manifest back. Catches a manifest that lies about its binary (a
    /// dependency left out, a function the module does not export, another module's
    /// manifest). Hosts run it before compiling bytes from their store.
    pub fn check_against(&self, wasm: &[u8]) -> Result<(), String> {
        let mut options = AnalyzeOptions::default();
        for global in &self.globals {
            options
                .globals
                .insert(String::from(&global.name), global.definition.clone());
        }
        for function in &self.functions {
            options.declared.insert(
                String::from(&function.name),
                Declared {
                    calls: function.calls.iter().map(String::from).collect(),
                    globals: function.globals.iter().map(String::from).collect(),
                },
            );
        }
        let analyzed = analyze_with(wasm, &options)
            .map_err(|e| alloc::format!("its manifest does not describe its bytes: {e}"))?;
        if normalized(&analyzed) != normalized(self) {
            return Err(
                "its manifest does not describe its bytes (functions, imports or globals differ)"
                    .into(),
            );
        }
        Ok(())
    }
}

fn normalized(manifest: &Manifest) -> Manifest {
    let mut m = manifest.clone();
    m.functions.sort_by(|a, b| a.name.cmp(&b.name));
    for f in &mut m.functions {
        f.calls.sort();
        f.globals.sort();
    }
    m.globals.sort_by(|a, b| a.name.cmp(&b.name));
    m
}
