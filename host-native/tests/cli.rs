//! The `linkcache` command-line tool, run as a real process on real directories.

use std::fs;
use std::process::Command;

mod support;

use support::{linkcache, stderr, stdout};

const UTIL: &str = r#"(module
  (func (export "util.sq") (param i64) (result i64) (i64.mul (local.get 0) (local.get 0)))
  (func (export "util.half") (param f64) (result f64) (f64.mul (local.get 0) (f64.const 0.5))))"#;

const MATH: &str = r#"(module
  (import "linkcache:fn" "util.sq" (func $sq (param i64) (result i64)))
  (func (export "math.quad") (param i64) (result i64) (call $sq (call $sq (local.get 0))))
  (func (export "math.neg") (param i32) (result i32) (i32.sub (i32.const 0) (local.get 0))))"#;

/// A cache with util (as .wasm) and math (as .wat) added through the CLI.
fn filled() -> (tempfile::TempDir, tempfile::TempDir) {
    let cache = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    fs::write(
        files.path().join("util.wasm"),
        wat::parse_str(UTIL).unwrap(),
    )
    .unwrap();
    fs::write(files.path().join("math.wat"), MATH).unwrap();
    let out = linkcache(
        cache.path(),
        &[
            "add",
            files.path().join("util.wasm").to_str().unwrap(),
            files.path().join("math.wat").to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("  util.sq (i64) -> (i64)"), "{text}");
    assert!(text.contains("  math.quad (i64) -> (i64)"), "{text}");
    (cache, files)
}

#[test]
fn add_and_call_parse_arguments_from_the_signature() {
    let (cache, _files) = filled();
    let out = linkcache(cache.path(), &["call", "math.quad", "3"]);
    assert_eq!(stdout(&out).trim(), "81", "{}", stderr(&out));
    let out = linkcache(cache.path(), &["call", "util.half", "5"]);
    assert_eq!(stdout(&out).trim(), "2.5");
    let out = linkcache(cache.path(), &["call", "math.neg", "-7", "--stats"]);
    assert_eq!(stdout(&out).trim(), "7");
    let stats: serde_json::Value =
        serde_json::from_str(&stderr(&out)).expect("--stats prints JSON");
    assert_eq!(stats["hits"], 1);
    assert_eq!(stats["modules_loaded"], 1, "math.neg does not need util");

    let out = linkcache(cache.path(), &["call", "math.quad", "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("`x` is not a i64"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_miss_exits_2_and_names_its_cause() {
    let (cache, _files) = filled();
    let out = linkcache(cache.path(), &["call", "math.cube", "2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("miss (unknown): "),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_non_wasm_file_is_one_clear_error_and_the_others_are_added() {
    let cache = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    fs::write(files.path().join("junk.wasm"), b"\x7fELF not wasm").unwrap();
    fs::write(files.path().join("util.wat"), UTIL).unwrap();
    let out = linkcache(
        cache.path(),
        &[
            "add",
            files.path().join("junk.wasm").to_str().unwrap(),
            files.path().join("util.wat").to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: ") && err.contains("junk.wasm"),
        "{err}"
    );
    assert_eq!(
        stdout(&linkcache(cache.path(), &["call", "util.sq", "9"])).trim(),
        "81"
    );
}

#[test]
fn ls_show_stats_and_graph_describe_the_cache() {
    let (cache, files) = filled();
    // A duplicate of util.sq (different bytes).
    fs::write(
        files.path().join("dup.wat"),
        r#"(module (func (export "util.sq") (param i64) (result i64) (i64.mul (local.get 0) (local.get 0))) (@custom "x" "y"))"#,
    )
    .unwrap();
    assert!(
        linkcache(
            cache.path(),
            &["add", files.path().join("dup.wat").to_str().unwrap()]
        )
        .status
        .success()
    );

    let all = stdout(&linkcache(cache.path(), &["ls"]));
    assert!(all.contains("math.neg") && all.contains("util.sq"), "{all}");
    let dups = stdout(&linkcache(cache.path(), &["ls", "--duplicates"]));
    assert!(
        dups.contains("util.sq") && !dups.contains("math.neg"),
        "{dups}"
    );

    let show = stdout(&linkcache(cache.path(), &["show", "util.sq"]));
    assert!(show.contains("defined by 2 module(s)"), "{show}");
    let id = all
        .lines()
        .find(|l| l.starts_with("math.quad"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    let module = stdout(&linkcache(cache.path(), &["show", &id]));
    assert!(module.contains("math.quad (i64) -> (i64)"), "{module}");
    assert!(module.contains("calls util.sq"), "{module}");
    assert!(
        module.contains("linkcache:fn util.sq: func (i64) -> (i64)"),
        "{module}"
    );
    assert!(module.contains("artifacts: none"), "{module}");
    // A call compiles math and stores its precompiled code; show lists it.
    assert!(
        linkcache(cache.path(), &["call", "math.quad", "1"])
            .status
            .success()
    );
    let module = stdout(&linkcache(cache.path(), &["show", &id[..8]]));
    assert!(module.contains(".cwasm"), "{module}");
    let out = linkcache(cache.path(), &["show", "nothing.here"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("error: "), "{}", stderr(&out));

    let stats: serde_json::Value =
        serde_json::from_str(&stdout(&linkcache(cache.path(), &["stats", "--json"]))).unwrap();
    assert_eq!(stats["modules"], 3);
    assert_eq!(stats["functions"], 4);
    assert_eq!(stats["duplicated_functions"], 1);

    let dot = stdout(&linkcache(
        cache.path(),
        &["graph", "math.quad", "--format", "dot"],
    ));
    assert!(dot.contains("\"math.quad\" -> \"util.sq\""), "{dot}");
    assert!(
        !dot.contains("math.neg"),
        "the closure of math.quad only: {dot}"
    );
}

#[test]
fn verify_is_clean_then_names_a_corrupt_manifest() {
    let (cache, _files) = filled();
    let out = linkcache(cache.path(), &["verify"]);
    assert!(
        out.status.success() && stdout(&out).starts_with("ok: "),
        "{}",
        stdout(&out)
    );

    // The last byte of a manifest record, inside its module's pack.
    let packs = cache.path().join("packs");
    let sub = fs::read_dir(&packs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let file = fs::read_dir(&sub).unwrap().next().unwrap().unwrap().path();
    // (`add` wrote both modules as one pack, linked under each name: a 24-byte header,
    // a 64-byte directory entry per module (its id, then the offset and length of its
    // manifest record and of its wasm bytes), then the contents.)
    let mut bytes = fs::read(&file).unwrap();
    let entry = &bytes[24..24 + 64];
    let damaged: String = entry[..32].iter().map(|b| format!("{b:02x}")).collect();
    let manifest_end = (u64::from_le_bytes(entry[32..40].try_into().unwrap())
        + u64::from_le_bytes(entry[40..48].try_into().unwrap())) as usize;
    bytes[manifest_end - 1] ^= 1;
    fs::write(&file, bytes).unwrap();
    let out = linkcache(cache.path(), &["verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains(&damaged), "{}", stdout(&out));
    assert_eq!(
        stdout(&out).matches("checksum").count(),
        1,
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("checksum"), "{}", stdout(&out));
}

#[test]
fn gc_shrinks_the_cache_and_leaves_it_sound() {
    let (cache, files) = filled();
    for i in 0..10 {
        fs::write(
            files.path().join(format!("f{i}.wat")),
            format!(r#"(module (func (export "fill.f{i}") (result i32) (i32.const {i})))"#),
        )
        .unwrap();
        linkcache(
            cache.path(),
            &[
                "add",
                files.path().join(format!("f{i}.wat")).to_str().unwrap(),
            ],
        );
    }
    // Use math.quad so that it and util are the most recently used.
    assert_eq!(
        stdout(&linkcache(cache.path(), &["call", "math.quad", "2"])).trim(),
        "16"
    );
    let before: serde_json::Value =
        serde_json::from_str(&stdout(&linkcache(cache.path(), &["stats", "--json"]))).unwrap();
    let size = before["total_bytes"].as_u64().unwrap();
    // Precompiled code makes util and math the big ones; the limit costs a few fillers.
    let limit = size - 1000;
    let out = linkcache(cache.path(), &["gc", "--max-size", &limit.to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("evicted "), "{}", stdout(&out));
    let after: serde_json::Value =
        serde_json::from_str(&stdout(&linkcache(cache.path(), &["stats", "--json"]))).unwrap();
    assert!(after["total_bytes"].as_u64().unwrap() <= limit, "{after}");
    let left = after["modules"].as_u64().unwrap();
    assert!(
        (2..12).contains(&left),
        "least recently used fillers go first: {after}"
    );
    let verify = linkcache(cache.path(), &["verify"]);
    assert!(verify.status.success(), "{}", stdout(&verify));
    // Every function left still loads and is right (none lost half its module).
    let listed = stdout(&linkcache(cache.path(), &["ls"]));
    let left_functions: Vec<&str> = listed
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(left_functions.contains(&"math.quad"), "{listed}");
    for func in left_functions {
        let (args, expected): (&[&str], String) = match func {
            "math.quad" => (&["3"], "81".into()),
            "math.neg" => (&["4"], "-4".into()),
            "util.sq" => (&["5"], "25".into()),
            "util.half" => (&["3"], "1.5".into()),
            filler => (&[], filler.trim_start_matches("fill.f").to_string()),
        };
        let mut command = vec!["call", func];
        command.extend(args);
        let out = linkcache(cache.path(), &command);
        assert_eq!(stdout(&out).trim(), expected, "{func}: {}", stderr(&out));
    }
    // Sizes take K, M, G suffixes; garbage is a one-line usage error.
    let out = linkcache(cache.path(), &["gc", "--max-size", "1G"]);
    assert!(
        stdout(&out).starts_with("evicted 0 module(s)"),
        "{}",
        stdout(&out)
    );
    let out = linkcache(cache.path(), &["gc", "--max-size", "lots"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not a size"), "{}", stderr(&out));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
}

#[test]
fn export_then_import_into_a_fresh_directory() {
    let (cache, files) = filled();
    let bundle = files.path().join("lib.lcbundle");
    let out = linkcache(cache.path(), &["export", bundle.to_str().unwrap()]);
    assert!(
        stdout(&out).contains("exported 2 module(s)"),
        "{}",
        stderr(&out)
    );
    let fresh = tempfile::tempdir().unwrap();
    let out = linkcache(fresh.path(), &["import", bundle.to_str().unwrap()]);
    assert!(
        stdout(&out).contains("imported 2 module(s)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        stdout(&linkcache(fresh.path(), &["call", "math.quad", "2"])).trim(),
        "16"
    );

    // Only the modules defining the functions named.
    let some = files.path().join("util.lcbundle");
    let out = linkcache(
        cache.path(),
        &["export", some.to_str().unwrap(), "util.half"],
    );
    assert!(
        stdout(&out).contains("exported 1 module(s)"),
        "{}",
        stderr(&out)
    );
    let out = linkcache(cache.path(), &["export", some.to_str().unwrap(), "no.such"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));

    let mut bytes = fs::read(&bundle).unwrap();
    bytes.truncate(bytes.len() - 10);
    fs::write(&bundle, bytes).unwrap();
    let out = linkcache(
        tempfile::tempdir().unwrap().path(),
        &["import", bundle.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("truncated"), "{}", stderr(&out));
}

#[test]
fn help_documents_the_exit_codes() {
    let out = Command::new(env!("CARGO_BIN_EXE_linkcache"))
        .arg("--help")
        .output()
        .unwrap();
    let help = stdout(&out);
    assert!(
        help.contains("Exit codes") && help.contains("2  `call`"),
        "{help}"
    );
    for command in [
        "add", "call", "ls", "show", "stats", "graph", "verify", "gc", "export", "import",
    ] {
        assert!(help.contains(command), "{command} missing from --help");
        let out = Command::new(env!("CARGO_BIN_EXE_linkcache"))
            .args([command, "--help"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{command} --help");
        assert!(
            stdout(&out).contains(&format!("Usage: linkcache {command}")),
            "{}",
            stdout(&out)
        );
    }
}

#[test]
fn a_usage_error_is_one_line_and_exits_1_not_2() {
    let dir = tempfile::tempdir().unwrap();
    for args in [&["frobnicate"][..], &["add"], &["graph", "--format", "svg"]] {
        let out = linkcache(dir.path(), args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: 2 means a miss");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("error: "), "{args:?}: {err}");
    }
}

#[test]
fn add_tells_text_from_binary_by_content_and_places_text_errors() {
    let cache = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    // Text in a .wasm file is assembled; a typo in a .wat file is placed.
    fs::write(files.path().join("text.wasm"), UTIL).unwrap();
    fs::write(
        files.path().join("typo.wat"),
        "(module\n  (func (export \"t.x\") (result i32) (i32.const oops)))",
    )
    .unwrap();
    let out = linkcache(
        cache.path(),
        &[
            "add",
            files.path().join("typo.wat").to_str().unwrap(),
            files.path().join("text.wasm").to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("typo.wat: not valid WebAssembly text") && err.contains("line 2"),
        "{err}"
    );
    assert!(
        stdout(&out).contains("text.wasm\n  util.half (f64) -> (f64)\n  util.sq (i64) -> (i64)"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn add_commits_many_files_in_batches_and_reports_each_bad_one() {
    let cache = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let mut args = vec!["add".to_string()];
    // More files than one batch holds, with two bad ones among them.
    for n in 0..300 {
        let path = files.path().join(format!("m{n}.wat"));
        fs::write(
            &path,
            format!(r#"(module (func (export "many.f{n}") (result i32) (i32.const {n})))"#),
        )
        .unwrap();
        args.push(path.to_str().unwrap().to_string());
    }
    for bad in ["bad1.wasm", "bad2.wasm"] {
        let path = files.path().join(bad);
        fs::write(&path, b"\0asm\x01\0\0\0\x7f").unwrap();
        args.insert(150, path.to_str().unwrap().to_string());
    }
    // With few file descriptors allowed: a batch of 256 modules stages 768 files, which
    // must not stay open until they are placed.
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -n 64 && exec "$0" "$@""#)
        .arg(env!("CARGO_BIN_EXE_linkcache"))
        .arg("--dir")
        .arg(cache.path())
        .args(&args)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "two files are bad: {}",
        stderr(&out)
    );
    let errors = stderr(&out);
    assert_eq!(errors.matches("error: ").count(), 2, "{errors}");
    assert!(
        errors.contains("bad1.wasm") && errors.contains("bad2.wasm"),
        "{errors}"
    );
    assert_eq!(stdout(&out).matches(".wat\n").count(), 300);
    let call = linkcache(cache.path(), &["call", "many.f299"]);
    assert_eq!(stdout(&call).trim(), "299", "{}", stderr(&call));
    let verify = linkcache(cache.path(), &["verify"]);
    assert!(verify.status.success(), "{}", stdout(&verify));
}
