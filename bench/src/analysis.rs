//! (7) linkcache's analysis of a module against wasmparser's own validation of the same
//! bytes, side by side in one process. Every module a cache adds (`add_module`,
//! `linkcache add`) is analyzed once: validated, and its calls, tables and global uses
//! turned into a manifest. Validation is the floor of that work, so the analysis is
//! measured as a multiple of it (issue 15's target: at most 2×).

use std::time::Instant;

use wasmparser::{Parser, Payload, Validator, WasmFeatures};
use wasmtime::Result;
use wasmtime::error::Context as _;

use crate::report::{Table, count, median, ms, ratio};

/// The module shapes of core's regression tests, built with wasm-encoder; the
/// benchmark uses the all-indirect one.
#[allow(dead_code)]
#[path = "../../core/tests/common/shapes.rs"]
mod shapes;

/// One module to analyze and validate.
pub struct Input {
    /// A short name for the table.
    pub name: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// `functions` exported functions that all `call_indirect` through one table listing
/// every one of them (the shape that made analysis cubic before issue 15).
pub fn all_indirect(functions: u32) -> Input {
    Input {
        name: format!(
            "generated: {} exported functions, all `call_indirect` through one table",
            count(functions as usize)
        ),
        bytes: shapes::all_indirect(functions),
    }
}

/// The features both sides use: `linkcache_core::analyze` validates with wasmparser's
/// defaults.
fn features() -> WasmFeatures {
    WasmFeatures::default()
}

/// Milliseconds of one `linkcache_core::analyze`; the manifest is dropped after the
/// clock stops (it is what the caller keeps).
fn time_analyze(bytes: &[u8]) -> Result<f64> {
    let started = Instant::now();
    let manifest = linkcache_core::analyze(bytes)?;
    let elapsed = started.elapsed().as_secs_f64() * 1000.0;
    drop(manifest);
    Ok(elapsed)
}

/// Milliseconds of one `Validator::validate_all`; its type information is dropped after
/// the clock stops (the analysis drops its own inside its time: the comparison leans
/// against linkcache).
fn time_validate(bytes: &[u8]) -> Result<f64> {
    let started = Instant::now();
    let types = Validator::new_with_features(features()).validate_all(bytes)?;
    let elapsed = started.elapsed().as_secs_f64() * 1000.0;
    drop(types);
    Ok(elapsed)
}

/// `median (min–max)`.
fn spread(values: &[f64], format: fn(f64) -> String) -> String {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!(
        "{} ({}–{})",
        format(median(values)),
        format(min),
        format(max)
    )
}

fn times(value: f64) -> String {
    format!("{value:.2}×")
}

/// Defined functions, and exported functions, of a module.
fn function_counts(bytes: &[u8]) -> Result<(u32, u32)> {
    let (mut defined, mut exported) = (0, 0);
    for payload in Parser::new(0).parse_all(bytes) {
        match payload? {
            Payload::FunctionSection(reader) => defined = reader.count(),
            Payload::ExportSection(reader) => {
                for export in reader {
                    if export?.kind == wasmparser::ExternalKind::Func {
                        exported += 1;
                    }
                }
            }
            _ => {}
        }
    }
    Ok((defined, exported))
}

/// Times both on every input, interleaved: each round runs each input once through
/// each side, alternating which side goes first.
pub fn section(inputs: &[Input], runs: usize) -> Result<Vec<Table>> {
    let mut table = Table::new(
        "(7) Analysis against wasmparser's validation of the same bytes",
        &[
            "module",
            "size",
            "functions (exported)",
            "`analyze`, median (min–max)",
            "`validate_all`, median (min–max)",
            "analyze ÷ validate",
            "per round, median (min–max)",
        ],
    );
    // Both must accept every input; the first run of each also warms caches.
    for input in inputs {
        time_analyze(&input.bytes).with_context(|| format!("analyze {}", input.name))?;
        time_validate(&input.bytes).with_context(|| format!("validate {}", input.name))?;
    }
    let mut analyzed = vec![Vec::with_capacity(runs); inputs.len()];
    let mut validated = vec![Vec::with_capacity(runs); inputs.len()];
    for round in 0..runs {
        eprintln!("  analysis and validation, round {}/{runs}", round + 1);
        for (i, input) in inputs.iter().enumerate() {
            if round % 2 == 0 {
                analyzed[i].push(time_analyze(&input.bytes)?);
                validated[i].push(time_validate(&input.bytes)?);
            } else {
                validated[i].push(time_validate(&input.bytes)?);
                analyzed[i].push(time_analyze(&input.bytes)?);
            }
        }
    }
    for ((input, analyze), validate) in inputs.iter().zip(&analyzed).zip(&validated) {
        let (defined, exported) = function_counts(&input.bytes)?;
        let rounds: Vec<f64> = analyze.iter().zip(validate).map(|(a, v)| a / v).collect();
        table.row(vec![
            input.name.clone(),
            format!("{} KB", count(input.bytes.len() / 1000)),
            format!("{} ({})", count(defined as usize), count(exported as usize)),
            spread(analyze, ms),
            spread(validate, ms),
            ratio(median(analyze), median(validate)),
            spread(&rounds, times),
        ]);
    }
    table.note(format!(
        "What `add_module` and `linkcache add` spend on a module before writing anything: \
         `linkcache_core::analyze` validates the bytes and derives the manifest (each \
         export's reachable `linkcache:fn` and `linkcache:global` imports, through direct \
         calls, tables and `ref.func`). Beside it, wasmparser's \
         `Validator::new_with_features(WasmFeatures::default()).validate_all` on the same \
         bytes, the same features: the floor of any analysis that validates. {runs} rounds \
         in one process, each running every module through both (alternating which goes \
         first), after one unmeasured run of each; \"analyze ÷ validate\" divides the \
         medians, \"per round\" is the ratio within each round, which this machine's noise \
         moves less. The analysis's time includes dropping its validator state; \
         validation's does not include dropping the type information it returns. Issue 15's \
         target: analysis at most 2× validation."
    ));
    Ok(vec![table])
}
