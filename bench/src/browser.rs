//! (5) The browser: headless Chromium through playwright-core.

use std::path::Path;

use wasmtime::{Result, bail};

use crate::report::Table;

/// Runs the browser benchmark.
pub fn run(_target: &Path, _quick: bool, _runs: usize) -> Result<Vec<Table>> {
    bail!("not written yet")
}
