//! Module sets that tests and benchmarks build the same way.

/// The closure of `t.root`: ten modules in three levels (root → `t.m0..2` → leaves
/// `t.l0..5`), in that order, as compiler `variant` emits them: the same code, bytes of
/// their own (a custom section names the variant). `t.root(x)` is [`tree_root_of`]`(x)`.
pub fn tree(variant: usize) -> Vec<Vec<u8>> {
    let tag = format!(r#"(@custom "variant" "{variant}")"#);
    let mut modules = vec![format!(
        r#"(module
        (import "linkcache:fn" "t.m0" (func $a (param i64) (result i64)))
        (import "linkcache:fn" "t.m1" (func $b (param i64) (result i64)))
        (import "linkcache:fn" "t.m2" (func $c (param i64) (result i64)))
        (func (export "t.root") (param i64) (result i64)
          (i64.add (call $a (local.get 0)) (i64.add (call $b (local.get 0)) (call $c (local.get 0))))) {tag})"#
    )];
    for mid in 0..3 {
        let (l, r) = (2 * mid, 2 * mid + 1);
        modules.push(format!(
            r#"(module
            (import "linkcache:fn" "t.l{l}" (func $l (param i64) (result i64)))
            (import "linkcache:fn" "t.l{r}" (func $r (param i64) (result i64)))
            (func (export "t.m{mid}") (param i64) (result i64)
              (i64.add (call $l (local.get 0)) (call $r (local.get 0)))) {tag})"#
        ));
    }
    for leaf in 0..6 {
        modules.push(format!(
            r#"(module (func (export "t.l{leaf}") (param i64) (result i64)
              (i64.add (local.get 0) (i64.const {leaf}))) {tag})"#
        ));
    }
    modules
        .iter()
        .map(|text| wat::parse_str(text).expect("tree WAT"))
        .collect()
}

/// The func_names of [`tree`], in the order of its modules.
pub fn tree_names() -> Vec<String> {
    let mut names = vec!["t.root".to_string()];
    names.extend((0..3).map(|m| format!("t.m{m}")));
    names.extend((0..6).map(|l| format!("t.l{l}")));
    names
}

/// `t.root(x)` of [`tree`]: the sum of `x + leaf` over the six leaves.
pub fn tree_root_of(x: i64) -> i64 {
    6 * x + 15
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_differ_in_bytes_and_name_every_function_once() {
        let (a, b) = (tree(0), tree(1));
        assert_eq!(a.len(), 10);
        assert!(a.iter().zip(&b).all(|(x, y)| x != y));
        for (module, name) in a.iter().zip(tree_names()) {
            let manifest = linkcache_core::analyze(module).unwrap();
            let names: Vec<&str> = manifest.functions.iter().map(|f| f.name.as_str()).collect();
            assert_eq!(names, [name.as_str()]);
        }
    }
}
