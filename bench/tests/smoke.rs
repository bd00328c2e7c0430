//! The benchmarks still build and run: `linkcache-bench --quick`, as CI runs it (inside
//! `cargo test --workspace`, so that it shares that build). Times are printed, never
//! asserted.

use std::process::Command;

#[test]
fn the_quick_benchmarks_run_and_print_their_tables() {
    let out = Command::new(env!("CARGO_BIN_EXE_linkcache-bench"))
        .arg("--quick")
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
}
