//! Engine behaviour on toy kinds: sweeps, keys, early cutoff, failures, status reasons.

use std::path::Path;

use cedm_cache::Cache;
use cedm_engine::event::Collect;
use cedm_engine::{
    Engine, EventKind, Experiment, Outcome, Plan, Reason, RunOptions, Status, expand, run, status,
    toy,
};

fn plan(dir: &Path, yaml: &str) -> Plan {
    let p = dir.join("exp.yaml");
    std::fs::write(&p, yaml).unwrap();
    let exp = Experiment::load(&p).unwrap();
    match expand(exp, &toy::registry()) {
        Ok(p) => p,
        Err(e) => panic!("{}", e.render_plain()),
    }
}

fn run_plan(plan: &Plan, cache: &Cache, opts: &RunOptions) -> (Collect, cedm_engine::RunSummary) {
    let reg = toy::registry();
    let events = Collect::default();
    let engine = Engine {
        cache,
        registry: &reg,
        reporter: &events,
    };
    let summary = run(plan, &engine, opts).unwrap();
    (events, summary)
}

fn started(c: &Collect) -> Vec<String> {
    c.labels(|k| matches!(k, EventKind::Started { .. }))
}

fn hits(c: &Collect) -> Vec<String> {
    c.labels(|k| matches!(k, EventKind::CacheHit { .. }))
}

fn sweep_yaml(cs: &str, other_k: i64, note: &str) -> String {
    format!(
        "name: sweep
sweep:
  C: [{cs}]
nodes:
  base:
    kind: toy/value
    params: {{value: 10, note: \"{note}\"}}
  scaled:
    kind: toy/add
    inputs: {{a: base}}
    params: {{k: \"${{C}}\"}}
  other:
    kind: toy/add
    inputs: {{a: base}}
    params: {{k: {other_k}}}
  total:
    kind: toy/add
    inputs: {{a: scaled, b: other}}
"
    )
}

fn value_of(cache: &Cache, s: &cedm_engine::RunSummary, plan: &Plan, label: &str) -> i64 {
    let i = plan
        .instances
        .iter()
        .position(|x| x.label == label)
        .unwrap();
    let r = s.outcomes[i].record().unwrap();
    let bytes = cache.read_object(&r.outputs["value.txt"].digest).unwrap();
    String::from_utf8(bytes).unwrap().trim().parse().unwrap()
}

#[test]
fn sweep_expands_and_collapses_shared_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let p = plan(dir.path(), &sweep_yaml("2, 3", 1, ""));
    let labels: Vec<&str> = p.instances.iter().map(|i| i.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "base",
            "scaled[C=2]",
            "scaled[C=3]",
            "other",
            "total[C=2]",
            "total[C=3]"
        ]
    );
    assert_eq!(p.points, 2);
}

#[test]
fn second_run_is_all_cache_hits() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path().join("cache")).unwrap();
    let p = plan(dir.path(), &sweep_yaml("2, 3", 1, ""));
    let (ev, s) = run_plan(&p, &cache, &RunOptions::default());
    assert!(s.ok());
    assert_eq!(started(&ev).len(), 6);
    assert_eq!(value_of(&cache, &s, &p, "total[C=3]"), 10 + 3 + 11);
    let (ev2, s2) = run_plan(&p, &cache, &RunOptions::default());
    assert!(started(&ev2).is_empty(), "{:?}", started(&ev2));
    assert_eq!(hits(&ev2).len(), 6);
    assert_eq!(s2.count(|o| matches!(o, Outcome::Cached(_))), 6);
}

#[test]
fn adding_a_sweep_point_runs_only_its_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path().join("cache")).unwrap();
    run_plan(
        &plan(dir.path(), &sweep_yaml("2, 3", 1, "")),
        &cache,
        &RunOptions::default(),
    );
    let p = plan(dir.path(), &sweep_yaml("2, 3, 4", 1, ""));
    let st = status(&p, &cache, &[]);
    let will_run: Vec<&str> = p
        .instances
        .iter()
        .zip(&st)
        .filter(|(_, s)| !matches!(s, Status::Cached { .. }))
        .map(|(i, _)| i.label.as_str())
        .collect();
    assert_eq!(will_run, ["scaled[C=4]", "total[C=4]"]);
    let new = p
        .instances
        .iter()
        .position(|i| i.label == "scaled[C=4]")
        .unwrap();
    assert!(
        matches!(
            &st[new],
            Status::WillRun {
                reason: Reason::New,
                ..
            }
        ),
        "{:?}",
        st[new]
    );
    let (ev, _) = run_plan(&p, &cache, &RunOptions::default());
    assert_eq!(started(&ev), ["scaled[C=4]", "total[C=4]"]);
}

#[test]
fn changing_a_middle_param_reruns_it_and_what_lies_below() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path().join("cache")).unwrap();
    run_plan(
        &plan(dir.path(), &sweep_yaml("2, 3", 1, "")),
        &cache,
        &RunOptions::default(),
    );
    let p = plan(dir.path(), &sweep_yaml("2, 3", 5, ""));
    let st = status(&p, &cache, &[]);
    let other = p.instances.iter().position(|i| i.label == "other").unwrap();
    match &st[other] {
        Status::WillRun {
            reason: Reason::ParamsChanged { changes },
            ..
        } => assert_eq!(changes, &["k: 1 → 5"]),
        s => panic!("{s:?}"),
    }
    let total = p
        .instances
        .iter()
        .position(|i| i.label == "total[C=2]")
        .unwrap();
    assert!(matches!(&st[total], Status::Waits { on, own: None } if on == &["other"]));
    let (ev, _) = run_plan(&p, &cache, &RunOptions::default());
    assert_eq!(started(&ev), ["other", "total[C=2]", "total[C=3]"]);
}

#[test]
fn early_cutoff_a_rerun_with_identical_output_keeps_children_cached() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path().join("cache")).unwrap();
    run_plan(
        &plan(dir.path(), &sweep_yaml("2, 3", 1, "")),
        &cache,
        &RunOptions::default(),
    );
    // `note` changes base's key but not its output bytes.
    let p = plan(dir.path(), &sweep_yaml("2, 3", 1, "a comment"));
    let (ev, s) = run_plan(&p, &cache, &RunOptions::default());
    assert_eq!(started(&ev), ["base"]);
    assert_eq!(hits(&ev).len(), 5);
    assert!(s.ok());
}

#[test]
fn force_reruns_a_node_and_early_cutoff_spares_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path().join("cache")).unwrap();
    let p = plan(dir.path(), &sweep_yaml("2", 1, ""));
    run_plan(&p, &cache, &RunOptions::default());
    let opts = RunOptions {
        force: vec!["base".into()],
        ..RunOptions::default()
    };
    let (ev, _) = run_plan(&p, &cache, &opts);
    assert_eq!(started(&ev), ["base"]);
}

#[test]
fn a_failure_stops_its_dependents_not_its_siblings() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path().join("cache")).unwrap();
    let yaml = "name: fail
nodes:
  base: {kind: toy/value, params: {value: 1}}
  bad: {kind: toy/add, inputs: {a: base}, params: {fail: true}}
  good: {kind: toy/add, inputs: {a: base}, params: {k: 2, sleep_ms: 50}}
  below: {kind: toy/add, inputs: {a: bad}}
  below2: {kind: toy/add, inputs: {a: below}}
";
    let p = plan(dir.path(), yaml);
    let (ev, s) = run_plan(&p, &cache, &RunOptions::default());
    assert!(!s.ok());
    assert_eq!(
        ev.labels(|k| matches!(k, EventKind::Failed { .. })),
        ["bad"]
    );
    assert_eq!(
        ev.labels(|k| matches!(k, EventKind::Blocked { .. })),
        ["below", "below2"]
    );
    assert_eq!(
        ev.labels(|k| matches!(k, EventKind::Finished { .. })),
        ["base", "good"]
    );
    // The failure and its log are kept; the next status says so.
    let bad = p.instances.iter().position(|i| i.label == "bad").unwrap();
    let st = status(&p, &cache, &[]);
    match &st[bad] {
        Status::WillRun { key, reason } => {
            assert_eq!(reason, &Reason::Failed);
            let f = cache.failure(key).unwrap().unwrap();
            assert_eq!(f.error, "asked to fail");
        }
        other => panic!("{other:?}"),
    }
    // Everything that succeeded stays cached.
    assert!(matches!(st[0], Status::Cached { .. }));
}

#[test]
fn only_runs_the_named_node_and_its_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path().join("cache")).unwrap();
    let p = plan(dir.path(), &sweep_yaml("2, 3", 1, ""));
    let opts = RunOptions {
        only: vec!["scaled[C=3]".into()],
        ..RunOptions::default()
    };
    let (ev, s) = run_plan(&p, &cache, &opts);
    assert_eq!(started(&ev), ["base", "scaled[C=3]"]);
    assert!(s.ok());
}

#[test]
fn file_params_are_keyed_by_content_not_path() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path().join("cache")).unwrap();
    std::fs::write(dir.path().join("a.bin"), b"12345").unwrap();
    std::fs::write(dir.path().join("b.bin"), b"12345").unwrap();
    let y = |f: &str| {
        format!("name: files\nnodes:\n  len: {{kind: toy/file, params: {{path: {f}}}}}\n")
    };
    let (ev, s) = run_plan(
        &plan(dir.path(), &y("a.bin")),
        &cache,
        &RunOptions::default(),
    );
    assert_eq!(started(&ev), ["len"]);
    assert!(s.ok());
    // Same content elsewhere: a hit.
    let (ev, _) = run_plan(
        &plan(dir.path(), &y("b.bin")),
        &cache,
        &RunOptions::default(),
    );
    assert!(started(&ev).is_empty());
    // Changed content: a rerun, with the reason.
    std::fs::write(dir.path().join("b.bin"), b"123456").unwrap();
    let p = plan(dir.path(), &y("b.bin"));
    let st = status(&p, &cache, &[]);
    assert!(
        matches!(&st[0], Status::WillRun { reason: Reason::FileChanged { params }, .. } if params == &["path"]),
        "{st:?}"
    );
    // A missing file is reported against the YAML before anything runs.
    let p = plan(dir.path(), &y("nope.bin"));
    let reg = toy::registry();
    let engine = Engine {
        cache: &cache,
        registry: &reg,
        reporter: &cedm_engine::event::Silent,
    };
    let err = run(&p, &engine, &RunOptions::default()).unwrap_err();
    let text = err.render_plain();
    assert!(text.contains("cannot read `path`"), "{text}");
    assert!(text.contains("nope.bin"), "{text}");
}

#[test]
fn kind_version_bump_is_explained() {
    // Simulate an older version by editing the stored ref's record.
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path().join("cache")).unwrap();
    let p = plan(
        dir.path(),
        "name: v\nnodes:\n  a: {kind: toy/value, params: {value: 1}}\n",
    );
    let (_, s) = run_plan(&p, &cache, &RunOptions::default());
    let rec = s.outcomes[0].record().unwrap().clone();
    let mut old = rec.clone();
    old.kind_version = 0;
    old.key = cedm_cache::Digest::of_bytes(b"old");
    let path = cache.record_path(&old.key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, serde_json::to_vec(&old).unwrap()).unwrap();
    cache.set_ref("v", "a", &old.key).unwrap();
    std::fs::remove_file(cache.record_path(&rec.key)).unwrap();
    let st = status(&p, &cache, &[]);
    assert!(
        matches!(
            &st[0],
            Status::WillRun {
                reason: Reason::VersionBumped { from: 0, to: 1 },
                ..
            }
        ),
        "{st:?}"
    );
}

#[test]
fn gather_slots_collect_instances_across_the_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path().join("cache")).unwrap();
    let yaml = "name: gather
sweep:
  C: [1, 2, 3]
  seed: [10, 20]
nodes:
  v: {kind: toy/value, params: {value: \"${C}\", note: \"s${seed}\"}}
  x: {kind: toy/add, inputs: {a: v}, params: {k: \"${seed}\"}}
  all: {kind: toy/sum, inputs: {values: x}}
  per_seed: {kind: toy/sum, inputs: {values: x}, params: {tag: \"s${seed}\"}}
";
    let p = plan(dir.path(), yaml);
    let labels: Vec<&str> = p.instances.iter().map(|i| i.label.as_str()).collect();
    assert!(
        labels.contains(&"all")
            && labels.contains(&"per_seed[seed=10]")
            && labels.contains(&"per_seed[seed=20]"),
        "{labels:?}"
    );
    let all = p.instances.iter().find(|i| i.label == "all").unwrap();
    assert_eq!(all.inputs.len(), 6);
    let (_, s) = run_plan(&p, &cache, &RunOptions::default());
    assert!(s.ok());
    // x = C + seed: all = Σ_C Σ_seed (C + seed) = 2·6 + 3·30 = 102; per seed 10: 6 + 30 = 36.
    assert_eq!(value_of(&cache, &s, &p, "all"), 102);
    assert_eq!(value_of(&cache, &s, &p, "per_seed[seed=10]"), 36);
    assert_eq!(value_of(&cache, &s, &p, "per_seed[seed=20]"), 66);
}
