//! Property test: parsing, expanding and planning never panic, whatever the input.

use std::path::Path;

use cedm_engine::{Experiment, expand, toy};
use proptest::prelude::*;

const VALID: &str = "name: fuzz
vars:
  base: 3
  file: data/${base}.bin
sweep:
  C: [1, 2, 3]
  seed: [0, 1]
nodes:
  a:
    kind: toy/value
    params: {value: \"${C}\", note: \"s${seed}\"}
  b:
    kind: toy/add
    inputs: {a: a}
    params:
      k: ${base}
      sleep_ms: 0
    resources: {gpus: 0, mem: 4G}
  c:
    kind: toy/add
    inputs: {a: b, b: a}
";

fn check(src: &str) {
    let registry = toy::registry();
    if let Ok(exp) = Experiment::parse(Path::new("fuzz.yaml"), src) {
        match expand(exp, &registry) {
            Ok(plan) => {
                // Planning against an empty cache must not panic either.
                let dir = tempfile::tempdir().unwrap();
                let cache = cedm_cache::Cache::open(dir.path()).unwrap();
                let _ = cedm_engine::status(&plan, &cache, &[]);
            }
            Err(e) => {
                let _ = e.render_plain();
            }
        }
    }
}

fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("name: x\n".to_string()),
        Just("nodes:\n".to_string()),
        Just("sweep:\n".to_string()),
        Just("vars:\n".to_string()),
        Just("  a:\n".to_string()),
        Just("    kind: toy/add\n".to_string()),
        Just("    kind: toy/value\n".to_string()),
        Just("    inputs: {a: a}\n".to_string()),
        Just("    params: {value: ${C}}\n".to_string()),
        Just("  C: [1, 2]\n".to_string()),
        Just("${".to_string()),
        Just("}".to_string()),
        Just("[".to_string()),
        Just("{".to_string()),
        Just(": ".to_string()),
        Just("- ".to_string()),
        Just("&a ".to_string()),
        Just("*a ".to_string()),
        Just("\t".to_string()),
        Just("'".to_string()),
        Just("\"".to_string()),
        "[a-z0-9_ ]{0,6}",
        any::<char>().prop_map(|c| c.to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,200}") {
        check(&s);
    }

    #[test]
    fn token_soup_never_panics(tokens in proptest::collection::vec(token(), 0..40)) {
        check(&tokens.concat());
    }

    #[test]
    fn mutated_valid_experiments_never_panic(
        edits in proptest::collection::vec((0usize..VALID.len(), any::<char>(), 0u8..3), 1..6)
    ) {
        let mut s: Vec<char> = VALID.chars().collect();
        for (pos, c, op) in edits {
            let pos = pos.min(s.len());
            match op {
                0 => s.insert(pos, c),
                1 if pos < s.len() => { s.remove(pos); }
                _ if pos < s.len() => s[pos] = c,
                _ => {}
            }
        }
        check(&s.into_iter().collect::<String>());
    }
}

#[test]
fn the_valid_seed_is_valid() {
    let exp = Experiment::parse(Path::new("fuzz.yaml"), VALID).unwrap();
    let plan = expand(exp, &toy::registry()).unwrap();
    assert_eq!(plan.points, 6);
    // a: 6 instances (C × seed); b depends on a; c on both.
    assert_eq!(plan.instances.len(), 18);
}
