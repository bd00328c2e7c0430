//! Markdown tables, medians and the description of the machine a report was measured on.

use std::fmt::Write as _;
use std::process::Command;

/// A Markdown table with a title and a note under it.
pub struct Table {
    title: String,
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
    notes: Vec<String>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(title: impl Into<String>, headers: &[&str]) -> Table {
        Table {
            title: title.into(),
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Adds a row (as many cells as headers).
    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.headers.len());
        self.rows.push(cells);
    }

    /// Adds a line of text under the table.
    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// The table as Markdown.
    pub fn render(&self) -> String {
        let mut out = format!("### {}\n\n", self.title);
        let _ = writeln!(out, "| {} |", self.headers.join(" | "));
        let _ = writeln!(
            out,
            "|{}",
            self.headers
                .iter()
                .enumerate()
                .map(|(i, _)| if i == 0 { " --- |" } else { " ---: |" })
                .collect::<String>()
        );
        for row in &self.rows {
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for note in &self.notes {
                let _ = writeln!(out, "{note}");
            }
        }
        out.push('\n');
        out
    }
}

/// The median of `values` (NaN when empty).
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

/// Milliseconds with a precision that suits their size.
pub fn ms(value: f64) -> String {
    if value.is_nan() {
        "–".into()
    } else if value < 1.0 {
        format!("{value:.3} ms")
    } else if value < 100.0 {
        format!("{value:.2} ms")
    } else {
        format!("{value:.0} ms")
    }
}

/// A ratio `a / b`, printed as `12.3×`.
pub fn ratio(a: f64, b: f64) -> String {
    let r = a / b;
    if !r.is_finite() {
        "–".into()
    } else if r < 10.0 {
        format!("{r:.2}×")
    } else if r < 1000.0 {
        format!("{r:.0}×")
    } else {
        format!("{:.1}k×", r / 1000.0)
    }
}

/// A count with thousands separators.
pub fn count(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The machine, toolchain and commit, as a Markdown list.
pub fn machine() -> String {
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or("unknown".into(), |kb| {
            format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0)
        });
    let kernel = command_output("uname", &["-sr"]);
    let rustc = command_output("rustc", &["--version"]);
    format!(
        "- CPU: {}, {} cores available, {memory} RAM; {kernel}\n\
         - wasmtime {}, {rustc}, `--release` build\n\
         - commit {}{}\n",
        cpu(),
        cores(),
        wasmtime_version(),
        commit().0,
        if commit().1 {
            " (with uncommitted changes in the checkout)"
        } else {
            ""
        }
    )
}

/// The one-line caption of a chart: machine, build and commit of this run, and the date.
pub fn caption() -> String {
    format!(
        "{}, {} cores · wasmtime {}, {} build · commit {}{} · {}",
        cpu(),
        cores(),
        wasmtime_version(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        commit().0,
        if commit().1 { "+changes" } else { "" },
        command_output("date", &["-u", "+%Y-%m-%d"]),
    )
}

/// The CPU's model name.
fn cpu() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

/// The checkout's commit, and whether the checkout has uncommitted changes.
fn commit() -> (String, bool) {
    let commit = command_output("git", &["rev-parse", "--short=12", "HEAD"]);
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    (commit, dirty)
}

/// The wasmtime version this binary links, from the workspace's lock file.
pub fn wasmtime_version() -> String {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock"))
        .unwrap_or_default();
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == "name = \"wasmtime\""
            && let Some(version) = lines.next().and_then(|l| l.strip_prefix("version = "))
        {
            return version.trim_matches('"').to_string();
        }
    }
    "unknown".into()
}

/// The trimmed stdout of a command, or `unknown`.
pub fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_formats() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(count(10000), "10,000");
        assert_eq!(count(100), "100");
        assert_eq!(ratio(640.0, 0.5), "1.3k×");
        assert_eq!(ms(0.1234), "0.123 ms");
    }
}
