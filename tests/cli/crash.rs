//! Crash safety: `kill -9` at many points leaves a cache that verifies clean, and a re-run ends
//! with the same output digests as an uninterrupted run.

use std::time::Duration;

use crate::util::{Dir, output_digests, stderr, stdout};

const EXP: &str = "name: crash
sweep:
  C: [1, 2, 3]
nodes:
  base: {kind: toy/value, params: {value: 5}}
  slow: {kind: toy/add, inputs: {a: base}, params: {k: \"${C}\", sleep_ms: 60}}
  other: {kind: toy/add, inputs: {a: base}, params: {k: 100, sleep_ms: 30}}
  sum: {kind: toy/add, inputs: {a: slow, b: other}, params: {sleep_ms: 40}}
  top: {kind: toy/add, inputs: {a: sum}, params: {k: 1}}
";

fn verify_clean(d: &Dir, context: &str) {
    let v = d.run(&["cache", "verify"]);
    if !d.cache().exists() {
        // Killed before the cache was created: nothing to verify, and verify says so.
        assert_eq!(v.status.code(), Some(2), "after {context}");
        assert!(
            stderr(&v).contains("no cedm cache"),
            "after {context}: {}",
            stderr(&v)
        );
        return;
    }
    assert!(
        v.status.success(),
        "after {context}: verify not clean:\n{}{}",
        stdout(&v),
        stderr(&v)
    );
}

#[test]
fn kill_9_at_many_points_then_resume_to_identical_digests() {
    let reference = Dir::new();
    reference.write("exp.yaml", EXP);
    assert!(reference.run(&["run", "exp.yaml"]).status.success());
    let want = output_digests(&reference, "exp.yaml");
    assert_eq!(want.len(), 11);

    let d = Dir::new();
    d.write("exp.yaml", EXP);
    let mut points = 0;
    let mut killed = 0;
    // Deterministic crash points inside the engine and the store.
    for point in [
        "before-publish",
        "publish-first-object",
        "publish-before-record",
        "publish-after-record",
    ] {
        for nth in 1..=5 {
            let o = d
                .cedm()
                .env("CEDM_TEST_CRASH", format!("{point}:{nth}"))
                .args(["run", "exp.yaml", "--jobs", "2"])
                .output()
                .unwrap();
            points += 1;
            if o.status.code().is_none() {
                killed += 1;
            }
            verify_clean(&d, &format!("crash at {point}:{nth}"));
        }
        // Start each point's series from an empty cache so every point is really reached.
        std::fs::remove_dir_all(d.cache()).unwrap();
    }
    // Timed kills of a running process.
    for ms in [5u64, 20, 45, 70, 95, 130, 160, 200] {
        let mut child = d
            .cedm()
            .args(["run", "exp.yaml", "--jobs", "2"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        points += 1;
        killed += 1;
        verify_clean(&d, &format!("kill -9 after {ms} ms"));
    }
    assert!(points >= 20, "{points} crash points");
    assert!(killed >= 20, "only {killed} runs were really killed");
    let o = d.run(&["run", "exp.yaml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    verify_clean(&d, "the final run");
    assert_eq!(output_digests(&d, "exp.yaml"), want);
}
