//! The benchmarks still build and run: `linkcache-bench --quick`, as CI runs it (inside
//! `cargo test --workspace`, so that it shares that build), and write their report and
//! charts. Times are printed, never asserted.

use std::path::Path;
use std::process::Command;

/// The charts of a quick run (no browser), and how many data points each one draws.
const QUICK_CHARTS: [(&str, &str); 3] = [
    (
        "cache-size.svg",
        "Warm target() + first call against cache size",
    ),
    (
        "large-module.svg",
        "A large module's load in a second process",
    ),
    (
        "add-throughput.svg",
        "add_module throughput against concurrent writers",
    ),
];

#[test]
fn the_quick_benchmarks_run_and_write_their_tables_and_charts() {
    let out_dir = tempfile::tempdir().expect("a temporary directory");
    let out = Command::new(env!("CARGO_BIN_EXE_linkcache-bench"))
        .arg("--quick")
        .arg("--out")
        .arg(out_dir.path())
        .output()
        .expect("the bench binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "linkcache-bench --quick failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains('|'),
        "no Markdown table in the output:\n{stdout}"
    );
    println!("{stdout}");

    let report = std::fs::read_to_string(out_dir.path().join("bench-report.md"))
        .expect("the report is written");
    assert!(
        report.contains("### (7) Analysis against wasmparser's validation of the same bytes")
            && report.contains("analyze ÷ validate"),
        "the report has no analysis section:\n{report}"
    );
    assert!(
        report.contains("### (8) A machine with an empty directory")
            && report.contains("| Redis | 10-module closure")
            && report.contains("### (8b) Publish throughput"),
        "the report has no remote-tier section:\n{report}"
    );
    let charts = out_dir.path().join("bench-charts");
    let written: Vec<String> = std::fs::read_dir(&charts)
        .expect("the chart directory is written")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(written.len(), QUICK_CHARTS.len(), "charts: {written:?}");
    for (file, title) in QUICK_CHARTS {
        assert!(
            report.contains(&format!("({}/{file})", "bench-charts")),
            "the report does not embed {file}"
        );
        let svg = std::fs::read_to_string(charts.join(file))
            .unwrap_or_else(|e| panic!("{file} is not written: {e}"));
        let texts = svg_texts(&charts.join(file), &svg);
        assert!(
            texts.iter().any(|t| t.starts_with(title)),
            "{file} has no title `{title}`: {texts:?}"
        );
        assert!(
            texts
                .iter()
                .any(|t| t.contains("cores · wasmtime") && t.contains("· commit ")),
            "{file} has no caption naming the machine and the commit: {texts:?}"
        );
    }

    // The numbers drawn are the quick run's: two cache sizes (10 and 100 modules) on three
    // lines, one synthetic large module with four bars, two writer counts.
    let cache_size = std::fs::read_to_string(charts.join("cache-size.svg")).unwrap();
    assert_eq!(
        element_count(&cache_size, "circle"),
        6,
        "cache-size.svg: 3 lines × 2 sizes"
    );
    let large = std::fs::read_to_string(charts.join("large-module.svg")).unwrap();
    let large_texts = svg_texts(Path::new("large-module.svg"), &large);
    for bar in [
        "Module::new (Cranelift): ",
        "wasmtime's cache: ",
        "linkcache target(): ",
        "deserialize_file, unchecked (floor): ",
    ] {
        assert_eq!(
            large_texts.iter().filter(|t| t.starts_with(bar)).count(),
            1,
            "large-module.svg: one `{bar}` bar: {large_texts:?}"
        );
    }
    let add = std::fs::read_to_string(charts.join("add-throughput.svg")).unwrap();
    let add_texts = svg_texts(Path::new("add-throughput.svg"), &add);
    for group in ["1 writer process", "8 writer processes"] {
        assert!(
            add_texts.iter().any(|t| t == group),
            "add-throughput.svg: no `{group}`: {add_texts:?}"
        );
    }
}

/// The text of every `<text>` element of a well-formed SVG document.
fn svg_texts(path: &Path, svg: &str) -> Vec<String> {
    let document = roxmltree::Document::parse(svg)
        .unwrap_or_else(|e| panic!("{} is not well-formed XML: {e}", path.display()));
    let root = document.root_element();
    assert_eq!(
        root.tag_name().name(),
        "svg",
        "{} is not an SVG document",
        path.display()
    );
    root.descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or_default().trim().to_string())
        .collect()
}

fn element_count(svg: &str, name: &str) -> usize {
    roxmltree::Document::parse(svg)
        .expect("well-formed")
        .descendants()
        .filter(|n| n.has_tag_name(name))
        .count()
}
