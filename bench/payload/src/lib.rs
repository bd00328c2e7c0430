//! A large real-world wasm module for linkcache's benchmarks: the `regex` crate (with its
//! Unicode tables) behind one exported function with numeric arguments.

use regex::Regex;

/// Builds a haystack from `seed`, compiles a Unicode-aware pattern and counts its
/// matches. Compiling the pattern at run time keeps the whole regex engine reachable.
#[unsafe(no_mangle)]
pub extern "C" fn count_matches(seed: i32) -> i32 {
    let words = ["alpha", "beta", "gamma", "δέλτα", "epsilon", "zeta", "ηta", "theta"];
    let mut haystack = String::new();
    let mut state = seed as u32 | 1;
    for _ in 0..64 {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        haystack.push_str(words[(state % words.len() as u32) as usize]);
        haystack.push_str(if state % 3 == 0 { "@example.org " } else { " " });
    }
    let pattern = Regex::new(r"\b\w+@\w+\.org\b").expect("the pattern is valid");
    pattern.find_iter(&haystack).count() as i32
}
