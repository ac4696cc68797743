//! The Slurm executor against a real Slurm: `.ci/run` starts a one-node cluster on localhost
//! (scripts/slurm_local.sh). Without one, each test says so on stderr (outside the test
//! harness's capture, so it shows in CI logs) and returns.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Command;

use crate::util::{Dir, events, output_digests, stderr, stdout, with_event};

/// Whether a Slurm cluster answers and has a usable node.
fn slurm_up() -> Result<(), String> {
    let o = Command::new("sinfo")
        .args(["-h", "-o", "%T"])
        .output()
        .map_err(|e| format!("cannot run sinfo: {e}"))?;
    let states = String::from_utf8_lossy(&o.stdout).to_string();
    if !o.status.success() {
        return Err(format!(
            "sinfo failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    if states
        .lines()
        .any(|s| matches!(s.trim(), "idle" | "mixed" | "allocated" | "completing"))
    {
        Ok(())
    } else {
        Err(format!("no usable node (sinfo states: {})", states.trim()))
    }
}

fn skip_loudly(test: &str, why: &str) {
    // Written straight to the process's stderr: libtest captures print!/eprint!, not this.
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SLURM TEST SKIPPED: {test}: {why}. Start a local cluster with `sudo scripts/slurm_local.sh start` (what .ci/run does). ***\n"
    );
}

fn sweep() -> &'static str {
    "name: sweep
sweep:
  C: [2, 3, 4]
nodes:
  base: {kind: toy/value, params: {value: 1}}
  scaled: {kind: toy/add, inputs: {a: base}, params: {k: \"${C}\", sleep_ms: 200}}
  other: {kind: toy/add, inputs: {a: base}, params: {k: 7}}
  total: {kind: toy/add, inputs: {a: scaled, b: other}, resources: {cpus: 1, mem: 100M, time: \"0:05:00\"}}
"
}

/// instance → executor of its record.
fn executors(d: &Dir) -> BTreeMap<String, String> {
    let ls = d.run(&["cache", "ls", "exp.yaml", "--json"]);
    assert!(ls.status.success(), "{}", stderr(&ls));
    let records: Vec<serde_json::Value> = serde_json::from_str(&stdout(&ls)).unwrap();
    records
        .iter()
        .map(|r| {
            (
                r["meta"]["instance"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                r["meta"]["executor"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

#[test]
fn a_sweep_runs_as_slurm_jobs_once_each_with_the_local_digests() {
    if let Err(why) = slurm_up() {
        skip_loudly(
            "a_sweep_runs_as_slurm_jobs_once_each_with_the_local_digests",
            &why,
        );
        return;
    }
    let d = Dir::new();
    d.write("exp.yaml", sweep());
    let o = d.run(&[
        "run",
        "exp.yaml",
        "--executor",
        "slurm",
        "--poll-seconds",
        "0.3",
        "--json",
    ]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let evs = events(&o);
    let finished = with_event(&evs, "finished");
    assert_eq!(finished.len(), 8, "{finished:?}");
    // Every node ran exactly once, each as its own Slurm job (array tasks count as jobs).
    let ex = executors(&d);
    assert_eq!(ex.len(), 8, "{ex:?}");
    let jobs: std::collections::BTreeSet<&String> = ex.values().collect();
    assert_eq!(jobs.len(), 8, "two nodes share a job: {ex:?}");
    assert!(ex.values().all(|e| e.starts_with("slurm:")), "{ex:?}");
    // The sweep's fan-out went out as one job array: scaled[C=2..4] are tasks of one job.
    let arrays: std::collections::BTreeSet<String> = ["scaled[C=2]", "scaled[C=3]", "scaled[C=4]"]
        .iter()
        .map(|i| {
            ex[*i]
                .trim_start_matches("slurm:")
                .split('_')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(arrays.len(), 1, "{ex:?}");
    assert!(ex["scaled[C=2]"].contains('_'), "{ex:?}");
    // The submissions: one per ready wave, not one per node.
    let slurm_dir = d.cache().join("slurm");
    let run = std::fs::read_dir(&slurm_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let scripts = std::fs::read_dir(&run)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("submit-")
        })
        .count();
    assert!(scripts < 8, "{scripts} sbatch submissions for 8 nodes");
    let script = std::fs::read_to_string(run.join("submit-0001.sh")).unwrap();
    assert!(
        script.contains("#SBATCH --signal=B:USR2@") && script.contains("#SBATCH --no-requeue"),
        "{script}"
    );

    // The same experiment locally: identical output digests.
    let local = Dir::new();
    local.write("exp.yaml", sweep());
    assert!(local.run(&["run", "exp.yaml"]).status.success());
    assert_eq!(
        output_digests(&d, "exp.yaml"),
        output_digests(&local, "exp.yaml")
    );

    // A second run through Slurm is all cache hits and submits nothing.
    let again = d.run(&[
        "run",
        "exp.yaml",
        "--executor",
        "slurm",
        "--poll-seconds",
        "0.3",
        "--json",
    ]);
    assert!(again.status.success());
    assert_eq!(with_event(&events(&again), "cache_hit").len(), 8);
    assert!(with_event(&events(&again), "finished").is_empty());
}

#[test]
fn a_failed_slurm_job_is_reported_and_its_log_kept() {
    if let Err(why) = slurm_up() {
        skip_loudly("a_failed_slurm_job_is_reported_and_its_log_kept", &why);
        return;
    }
    let d = Dir::new();
    d.write(
        "exp.yaml",
        "name: failing
nodes:
  base: {kind: toy/value, params: {value: 1}}
  bad: {kind: toy/add, inputs: {a: base}, params: {fail: true}}
  after: {kind: toy/add, inputs: {a: bad}}
",
    );
    let o = d.run(&[
        "run",
        "exp.yaml",
        "--executor",
        "slurm",
        "--poll-seconds",
        "0.3",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("asked to fail") && err.contains("Slurm job"),
        "{err}"
    );
    // The failure, with the node's log, is in the cache.
    let show = d.run(&["cache", "show", "bad", "exp.yaml"]);
    let text = stdout(&show);
    assert!(text.contains("asked to fail"), "{text}");
}
