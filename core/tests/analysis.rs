//! Analysis: what a manifest says a module's functions need, and the errors bad input
//! gets.

use linkcache_core::{
    AnalysisError, AnalyzeOptions, Declared, FuncSig, ImportKind, Manifest, ValType, analyze,
    analyze_with, parse_globals_section,
};

fn wat(text: &str) -> Vec<u8> {
    wat::parse_str(text).unwrap()
}

fn calls(manifest: &Manifest, func: &str) -> Vec<String> {
    manifest
        .function(func)
        .unwrap()
        .calls
        .iter()
        .map(String::from)
        .collect()
}

#[test]
fn non_wasm_bytes_are_not_wasm() {
    assert!(matches!(
        analyze(b"hello, world"),
        Err(AnalysisError::NotWasm { .. })
    ));
    assert!(matches!(analyze(b""), Err(AnalysisError::NotWasm { .. })));
    // The magic alone, cut before its version: said to be too short, not "not wasm".
    match analyze(b"\0asm\x01") {
        Err(AnalysisError::NotWasm { reason }) => {
            assert!(reason.contains("5 bytes: too short"), "{reason}")
        }
        other => panic!("expected NotWasm, got {other:?}"),
    }
    // A component's header.
    assert!(matches!(
        analyze(b"\0asm\x0d\0\x01\0"),
        Err(AnalysisError::NotWasm { .. })
    ));
}

#[test]
fn invalid_module_names_the_offset() {
    // A function returning i64 whose body leaves an i32.
    let mut bytes = wat(r#"(module (func (export "f") (result i32) (i32.const 1)))"#);
    let pos = bytes.iter().rposition(|&b| b == 0x7f).unwrap(); // result type i32
    bytes[pos] = 0x7e; // i64
    let err = analyze(&bytes).unwrap_err();
    assert!(
        matches!(err, AnalysisError::Invalid { offset, .. } if offset > 8),
        "{err}"
    );
}

#[test]
fn truncated_module_is_an_error() {
    // The code section comes last; cutting into it (or into its last function) always
    // leaves an invalid module. (A cut at a section boundary can leave a valid one.)
    let bytes = wat(r#"(module (func (export "f") (result i32) (i32.const 1)))"#);
    for cut in 1..=6 {
        let len = bytes.len() - cut;
        assert!(analyze(&bytes[..len]).is_err(), "truncated to {len}");
    }
}

#[test]
fn direct_calls_through_internal_helpers_reach_imports() {
    let m = analyze(&wat(r#"(module
          (import "linkcache:fn" "lib.a" (func $a (param i32) (result i32)))
          (import "linkcache:fn" "lib.b" (func $b (param i32) (result i32)))
          (import "env" "log" (func $log (param i32)))
          (func $helper (param i32) (result i32) (call $a (local.get 0)))
          (func (export "m.uses_a") (param i32) (result i32) (call $helper (local.get 0)))
          (func (export "m.uses_b") (param i32) (result i32)
            (call $log (local.get 0)) (return_call $b (local.get 0)))
          (func (export "m.none") (param i32) (result i32) (local.get 0)))"#))
    .unwrap();
    assert_eq!(calls(&m, "m.uses_a"), ["lib.a"]);
    assert_eq!(calls(&m, "m.uses_b"), ["lib.b"]);
    assert!(calls(&m, "m.none").is_empty());
    assert_eq!(
        m.function("m.uses_a").unwrap().signature,
        FuncSig::new([ValType::I32], [ValType::I32])
    );
    let embedder: Vec<_> = m
        .embedder_imports()
        .map(|i| (i.namespace.as_str(), i.name.as_str()))
        .collect();
    assert_eq!(embedder, [("env", "log")]);
}

#[test]
fn call_indirect_reaches_everything_a_table_or_ref_func_names() {
    let m = analyze(&wat(r#"(module
          (import "linkcache:fn" "lib.in_table" (func $t (result i32)))
          (import "linkcache:fn" "lib.by_ref" (func $r (result i32)))
          (import "linkcache:fn" "lib.direct" (func $d (result i32)))
          (type $ret (func (result i32)))
          (table 2 funcref)
          (elem (i32.const 0) $t)
          (elem declare func $r)
          (func $make (result funcref) (ref.func $r))
          (func (export "m.indirect") (result i32) (call_indirect (type $ret) (i32.const 0)))
          (func (export "m.direct") (result i32) (call $d)))"#))
    .unwrap();
    assert_eq!(calls(&m, "m.indirect"), ["lib.by_ref", "lib.in_table"]);
    assert_eq!(calls(&m, "m.direct"), ["lib.direct"]);
}

#[test]
fn simd_bodies_are_validated_and_their_calls_found() {
    let m = analyze(&wat(r#"(module
          (import "linkcache:fn" "lib.a" (func $a (param i32) (result i32)))
          (func (export "m.simd") (param i32) (result i32)
            (call $a (i32x4.extract_lane 1
              (i32x4.add (v128.const i32x4 1 2 3 4) (i32x4.splat (local.get 0)))))))"#))
    .unwrap();
    assert_eq!(calls(&m, "m.simd"), ["lib.a"]);
    // A SIMD operator on the wrong operand is caught by the same pass.
    let err = analyze(&wat(r#"(module
          (func (export "m.bad") (result v128)
            (i32x4.add (v128.const i32x4 1 2 3 4) (f32x4.splat (i32.const 1)))))"#))
    .unwrap_err();
    assert!(matches!(err, AnalysisError::Invalid { .. }), "{err}");
}

#[test]
fn call_ref_reaches_everything_ref_func_names() {
    let m = analyze(&wat(r#"(module
          (import "linkcache:fn" "lib.by_ref" (func $r (result i32)))
          (type $ret (func (result i32)))
          (elem declare func $r)
          (func (export "m.call_ref") (result i32) (call_ref $ret (ref.func $r)))
          (func (export "m.tail") (result i32) (return_call_ref $ret (ref.func $r)))
          (func (export "m.none") (result i32) (i32.const 0)))"#))
    .unwrap();
    assert_eq!(calls(&m, "m.call_ref"), ["lib.by_ref"]);
    assert_eq!(calls(&m, "m.tail"), ["lib.by_ref"]);
    assert!(calls(&m, "m.none").is_empty());
}

#[test]
fn the_start_function_counts_for_every_function() {
    let m = analyze(&wat(r#"(module
          (import "linkcache:fn" "lib.init" (func $init))
          (func $start (call $init))
          (start $start)
          (func (export "m.f")))"#))
    .unwrap();
    assert_eq!(calls(&m, "m.f"), ["lib.init"]);
}

#[test]
fn globals_come_from_the_custom_section_and_the_caller_wins() {
    let bytes = wat(r#"(module
          (import "linkcache:global" "cfg.a" (global $a (mut i64)))
          (import "linkcache:global" "cfg.b" (global $b i32))
          (global $derived i32 (global.get $b))
          (func (export "m.reads_a") (result i64) (global.get $a))
          (func (export "m.reads_derived") (result i32) (global.get $derived))
          (func (export "m.none"))
          (@custom "linkcache.globals" "\02\05cfg.a\017\05cfg.b\012"))"#);
    let m = analyze(&bytes).unwrap();
    assert_eq!(m.function("m.reads_a").unwrap().globals, ["cfg.a"]);
    // Reading a defined global initialized from an import uses the import.
    assert_eq!(m.function("m.reads_derived").unwrap().globals, ["cfg.b"]);
    assert!(m.function("m.none").unwrap().globals.is_empty());
    assert_eq!(m.global("cfg.a").unwrap().definition, b"7");
    assert!(m.global("cfg.a").unwrap().mutable);
    assert!(!m.global("cfg.b").unwrap().mutable);

    let m = analyze_with(&bytes, &AnalyzeOptions::default().global("cfg.a", "9")).unwrap();
    assert_eq!(m.global("cfg.a").unwrap().definition, b"9");
    assert_eq!(m.global("cfg.b").unwrap().definition, b"2");
}

#[test]
fn globals_read_by_data_offsets_count_for_every_function() {
    let m = analyze_with(
        &wat(r#"(module
              (import "linkcache:global" "cfg.base" (global $base i32))
              (memory 1)
              (data (global.get $base) "hi")
              (func (export "m.f")))"#),
        &AnalyzeOptions::default().global("cfg.base", "0"),
    )
    .unwrap();
    assert_eq!(m.function("m.f").unwrap().globals, ["cfg.base"]);
}

#[test]
fn a_global_without_a_definition_is_an_error_naming_it() {
    let err = analyze(&wat(
        r#"(module (import "linkcache:global" "cfg.x" (global i32)) (func (export "f")))"#,
    ))
    .unwrap_err();
    assert_eq!(
        err,
        AnalysisError::MissingGlobalDefinition {
            global: "cfg.x".into()
        }
    );
}

#[test]
fn a_malformed_globals_section_is_an_error() {
    let err = analyze(&wat(r#"(module (@custom "linkcache.globals" "\05\01"))"#)).unwrap_err();
    assert!(
        matches!(err, AnalysisError::BadGlobalsSection { .. }),
        "{err}"
    );
    assert!(parse_globals_section(b"\x01\x01a\x05ab").is_err());
    assert_eq!(
        parse_globals_section(&linkcache_core::encode_globals_section([("x", &b"12"[..])]))
            .unwrap(),
        [("x".to_string(), b"12".to_vec())]
    );
}

#[test]
fn cache_namespaces_accept_only_their_kind() {
    let err = analyze(&wat(r#"(module (import "linkcache:fn" "x" (global i32)))"#)).unwrap_err();
    assert!(
        matches!(err, AnalysisError::UnsupportedImport { .. }),
        "{err}"
    );
    let err = analyze(&wat(
        r#"(module (import "linkcache:global" "x" (global externref)))"#,
    ))
    .unwrap_err();
    assert!(
        matches!(err, AnalysisError::UnsupportedImport { .. }),
        "{err}"
    );
}

#[test]
fn reexporting_an_import_is_rejected() {
    let err = analyze(&wat(
        r#"(module (import "linkcache:fn" "a" (func $a)) (export "a" (func $a)))"#,
    ))
    .unwrap_err();
    assert_eq!(err, AnalysisError::ReexportedImport { name: "a".into() });
}

const DECLARED: &str = r#"(module
  (import "linkcache:fn" "lib.a" (func $a))
  (import "linkcache:fn" "lib.b" (func $b))
  (func (export "m.f") (call $a)))"#;

fn declared(calls: &[&str]) -> AnalyzeOptions {
    AnalyzeOptions::default().declare(
        "m.f",
        Declared {
            calls: calls.iter().map(|s| s.to_string()).collect(),
            globals: vec![],
        },
    )
}

#[test]
fn a_declaration_covering_the_analysis_is_used() {
    // Declaring more than the analysis finds (an import it knows it may reach) is safe.
    let m = analyze_with(&wat(DECLARED), &declared(&["lib.a", "lib.b"])).unwrap();
    assert_eq!(calls(&m, "m.f"), ["lib.a", "lib.b"]);
}

#[test]
fn a_declaration_missing_a_dependency_is_rejected_naming_both() {
    let err = analyze_with(&wat(DECLARED), &declared(&[])).unwrap_err();
    assert_eq!(
        err,
        AnalysisError::UndeclaredDependency {
            function: "m.f".into(),
            dependency: "lib.a".into()
        }
    );
}

#[test]
fn a_declaration_naming_a_non_import_is_rejected() {
    let err = analyze_with(&wat(DECLARED), &declared(&["lib.a", "lib.zzz"])).unwrap_err();
    assert_eq!(
        err,
        AnalysisError::DeclaredNotImported {
            function: "m.f".into(),
            dependency: "lib.zzz".into()
        }
    );
    let err = analyze_with(
        &wat(DECLARED),
        &AnalyzeOptions::default().declare("m.nope", Declared::default()),
    )
    .unwrap_err();
    assert!(matches!(err, AnalysisError::DeclaredUnknownFunction { .. }));
}

#[test]
fn analyzed_manifest_round_trips_through_its_record_and_rejects_corruption() {
    let m = analyze(&wat(r#"(module
          (import "linkcache:fn" "lib.a" (func $a (param f64) (result f64)))
          (import "env" "mem" (memory 1))
          (func (export "m.f") (param f64) (result f64) (call $a (local.get 0))))"#))
    .unwrap();
    assert!(matches!(m.imports[1].kind, ImportKind::Memory));
    let record = m.encode();
    assert_eq!(Manifest::decode(&record).unwrap(), m);
    for i in (0..record.len()).step_by(7) {
        let mut bad = record.clone();
        bad[i] ^= 0x10;
        assert!(Manifest::decode(&bad).is_err(), "flip at {i}");
    }
    assert!(Manifest::decode(&record[..record.len() - 1]).is_err());
}

#[test]
fn a_checksummed_manifest_that_lies_is_rejected_by_check() {
    let mut m = analyze(&wat(DECLARED)).unwrap();
    m.functions[0].calls.push("lib.not_imported".into());
    let record = linkcache_core::record::encode(linkcache_core::record::RecordKind::Manifest, &m);
    assert!(Manifest::decode(&record).is_err());
}

#[test]
fn a_manifest_is_checked_against_the_bytes_it_claims_to_describe() {
    let util = wat::parse_str(
        r#"(module (func (export "util.sq") (param i64) (result i64)
        (i64.mul (local.get 0) (local.get 0))))"#,
    )
    .unwrap();
    let math = wat::parse_str(
        r#"(module
        (import "linkcache:fn" "util.sq" (func $sq (param i64) (result i64)))
        (func (export "math.quad") (param i64) (result i64) (call $sq (call $sq (local.get 0)))))"#,
    )
    .unwrap();
    let manifest = linkcache_core::analyze(&math).unwrap();
    assert_eq!(manifest.check_against(&math), Ok(()));

    let mut lying = manifest.clone();
    lying.functions[0].calls.clear();
    let err = lying.check_against(&math).unwrap_err();
    assert!(err.contains("util.sq"), "{err}");

    let other = linkcache_core::analyze(&util).unwrap();
    assert!(
        other.check_against(&math).is_err(),
        "another module's manifest"
    );
}

#[test]
fn an_appended_globals_section_is_read_back_by_analysis() {
    let mut bytes = wat::parse_str(
        r#"(module
        (import "linkcache:global" "cfg.k" (global i64))
        (func (export "f") (result i64) (global.get 0)))"#,
    )
    .unwrap();
    linkcache_core::append_globals_section(&mut bytes, [("cfg.k", &b"42"[..])]);
    let manifest = linkcache_core::analyze(&bytes).unwrap();
    let global = manifest.global("cfg.k").unwrap();
    assert_eq!(global.definition, b"42");
    assert_eq!(manifest.functions[0].globals, ["cfg.k"]);
}
