//! Trajectories on the toy kind `toy/walk`: a longer run resumes from the longest cached
//! snapshot and gives the bytes of a fresh run; snapshots are cache hits for shorter runs; a
//! damaged or collected state is never used; interrupts still resume from the work directory.

use std::path::Path;

use cedm_cache::{Cache, Record};
use cedm_engine::event::Collect;
use cedm_engine::{Engine, EventKind, Experiment, Plan, RunOptions, expand, run, toy};

fn plan(dir: &Path, params: &str) -> Plan {
    let p = dir.join("exp.yaml");
    std::fs::write(
        &p,
        format!("name: walk\nnodes:\n  w: {{kind: toy/walk, params: {{{params}}}}}\n"),
    )
    .unwrap();
    match expand(Experiment::load(&p).unwrap(), &toy::registry()) {
        Ok(p) => p,
        Err(e) => panic!("{}", e.render_plain()),
    }
}

/// Run `w` with these params; (its record, whether it started, the events).
fn walk(dir: &Path, cache: &Cache, params: &str) -> (Option<Record>, bool, Collect) {
    let p = plan(dir, params);
    let reg = toy::registry();
    let events = Collect::default();
    let engine = Engine {
        cache,
        registry: &reg,
        reporter: &events,
    };
    let s = run(&p, &engine, &RunOptions::default()).unwrap();
    let started = !events
        .labels(|k| matches!(k, EventKind::Started { .. }))
        .is_empty();
    (s.outcomes[0].record().cloned(), started, events)
}

fn steps_run(r: &Record) -> f64 {
    r.meta.stats["steps_run"]
}

fn value(cache: &Cache, r: &Record) -> String {
    String::from_utf8(cache.read_object(&r.outputs["value.txt"].digest).unwrap()).unwrap()
}

fn log(cache: &Cache, r: &Record) -> String {
    String::from_utf8(cache.read_object(&r.meta.log.unwrap()).unwrap()).unwrap()
}

#[test]
fn a_longer_run_resumes_from_the_shorter_one_and_equals_a_fresh_run() {
    let d = tempfile::tempdir().unwrap();
    let a = Cache::open(d.path().join("a")).unwrap();
    let (r2, _, _) = walk(d.path(), &a, "steps: 2");
    let r2 = r2.unwrap();
    assert_eq!(steps_run(&r2), 2.0);
    assert!(
        r2.meta.resume.is_some(),
        "the final state is kept for a longer run"
    );
    // `cedm status` says that the 4-step run continues the cached 2-step one.
    let st = cedm_engine::status(&plan(d.path(), "steps: 4"), &a, &[]);
    assert!(
        matches!(&st[0], cedm_engine::Status::WillRun { reason: cedm_engine::Reason::Extends { param, from, .. }, .. } if param == "steps" && *from == 2.0),
        "{st:?}"
    );
    if let cedm_engine::Status::WillRun { reason, .. } = &st[0] {
        assert!(
            reason
                .to_string()
                .contains("continues the cached steps = 2"),
            "{reason}"
        );
    }
    let (r4, started, _) = walk(d.path(), &a, "steps: 4");
    let r4 = r4.unwrap();
    assert!(started);
    assert_eq!(steps_run(&r4), 2.0, "only the second half ran");
    assert!(
        log(&a, &r4).contains("snapshot at steps = 2"),
        "{}",
        log(&a, &r4)
    );
    // A fresh cache: the same key, the same bytes, all four steps run.
    let b = Cache::open(d.path().join("b")).unwrap();
    let (f4, _, _) = walk(d.path(), &b, "steps: 4");
    let f4 = f4.unwrap();
    assert_eq!(steps_run(&f4), 4.0);
    assert_eq!(f4.key, r4.key);
    assert_eq!(f4.outputs, r4.outputs);
    assert_eq!(f4.output_digest, r4.output_digest);
    // Another start value is another trajectory: nothing to resume from.
    let (o4, _, _) = walk(d.path(), &a, "steps: 4, start: 5");
    assert_eq!(steps_run(&o4.unwrap()), 4.0);
}

#[test]
fn snapshots_are_cache_hits_for_shorter_runs_and_resume_points_for_longer_ones() {
    let d = tempfile::tempdir().unwrap();
    let a = Cache::open(d.path().join("a")).unwrap();
    let (r6, _, _) = walk(d.path(), &a, "steps: 6, snapshot_every: 2");
    assert_eq!(steps_run(&r6.unwrap()), 6.0);
    // 4 and 2 were published while it ran: hits, whatever snapshot_every says now.
    let (r4, started, _) = walk(d.path(), &a, "steps: 4");
    assert!(!started, "the snapshot at 4 is a cache hit");
    let r4 = r4.unwrap();
    assert!(
        r4.meta.instance.contains("steps = 4"),
        "{}",
        r4.meta.instance
    );
    let (_, started2, _) = walk(d.path(), &a, "steps: 2, snapshot_every: 1");
    assert!(!started2);
    let b = Cache::open(d.path().join("b")).unwrap();
    let (f4, _, _) = walk(d.path(), &b, "steps: 4");
    let f4 = f4.unwrap();
    assert_eq!(
        (f4.key, &f4.outputs),
        (r4.key, &r4.outputs),
        "a snapshot is the fresh run's bytes"
    );
    assert_eq!(value(&a, &r4), value(&b, &f4));
    // 5 resumes from the longest snapshot not past it (4), 7 from the end of the 6 run.
    let (r5, _, _) = walk(d.path(), &a, "steps: 5");
    assert_eq!(steps_run(&r5.unwrap()), 1.0);
    let (r7, _, _) = walk(d.path(), &a, "steps: 7");
    assert_eq!(steps_run(&r7.unwrap()), 1.0);
}

#[test]
fn a_damaged_or_collected_state_is_not_used() {
    let d = tempfile::tempdir().unwrap();
    let a = Cache::open(d.path().join("a")).unwrap();
    let (r2, _, _) = walk(d.path(), &a, "steps: 2");
    let state = a.object_path(&r2.unwrap().meta.resume.unwrap());
    // gc keeps the state of a live record.
    a.gc(None, false).unwrap();
    assert!(state.exists(), "gc removed a live record's resume state");
    // Damaged (same size, other bytes): the run starts over instead of resuming from it.
    let mut bytes = std::fs::read(&state).unwrap();
    bytes[0] ^= 1;
    let mut perm = std::fs::metadata(&state).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(&state, perm).unwrap();
    std::fs::write(&state, &bytes).unwrap();
    let (r3, _, _) = walk(d.path(), &a, "steps: 3");
    assert_eq!(steps_run(&r3.unwrap()), 3.0);
}

#[test]
fn an_interrupted_run_resumes_from_its_own_checkpoint_first() {
    let d = tempfile::tempdir().unwrap();
    let a = Cache::open(d.path().join("a")).unwrap();
    walk(d.path(), &a, "steps: 2");
    // 6 steps: resumes from 2, walks 1 and is interrupted, keeping its checkpoint at 3.
    let (none, _, _) = walk(d.path(), &a, "steps: 6, stop_after: 1");
    assert!(none.is_none());
    let (r6, _, _) = walk(d.path(), &a, "steps: 6");
    let r6 = r6.unwrap();
    assert_eq!(
        steps_run(&r6),
        3.0,
        "from its checkpoint at 3, not the snapshot at 2"
    );
    let b = Cache::open(d.path().join("b")).unwrap();
    let (f6, _, _) = walk(d.path(), &b, "steps: 6");
    assert_eq!(f6.unwrap().outputs, r6.outputs);
}

#[test]
fn a_sweep_over_the_length_runs_shortest_first_and_each_resumes_from_the_previous() {
    let d = tempfile::tempdir().unwrap();
    let a = Cache::open(d.path().join("a")).unwrap();
    let p = d.path().join("exp.yaml");
    std::fs::write(
        &p,
        "name: walk\nsweep:\n  n: [6, 2, 4]\nnodes:\n  w: {kind: toy/walk, params: {steps: \"${n}\"}}\n",
    )
    .unwrap();
    let plan = expand(Experiment::load(&p).unwrap(), &toy::registry()).unwrap();
    let reg = toy::registry();
    let events = Collect::default();
    let engine = Engine {
        cache: &a,
        registry: &reg,
        reporter: &events,
    };
    // Three jobs at once: without the ordering all three would train from scratch in parallel.
    let s = run(
        &plan,
        &engine,
        &RunOptions {
            jobs: 3,
            ..RunOptions::default()
        },
    )
    .unwrap();
    assert!(s.ok());
    let total: f64 = s
        .outcomes
        .iter()
        .map(|o| steps_run(o.record().unwrap()))
        .sum();
    assert_eq!(total, 6.0, "2 + 2 + 2 steps, not 2 + 4 + 6");
}

/// `search:` (successive halving): four candidates at 2 steps, the better half continued to 4
/// steps from their snapshots; the same choices again from the cache without running anything.
#[test]
fn successive_halving_promotes_the_best_half_and_resumes_their_trajectories() {
    use cedm_engine::search;
    let d = tempfile::tempdir().unwrap();
    let cache = Cache::open(d.path().join("a")).unwrap();
    let p = d.path().join("exp.yaml");
    std::fs::write(
        &p,
        "name: sh\nsweep:\n  C: [1, 2, 3, 4]\n  L: [2, 4]\nsearch: {over: C, budget: L, metric: s, keep: 0.5}\nnodes:\n  w: {kind: toy/walk, params: {steps: \"${L}\", start: \"${C}\"}}\n  s: {kind: toy/score, inputs: {a: w}}\n",
    )
    .unwrap();
    let exp = Experiment::load(&p).unwrap();
    let reg = toy::registry();
    let events = Collect::default();
    let engine = Engine {
        cache: &cache,
        registry: &reg,
        reporter: &events,
    };
    let mut steps = 0.0;
    let rungs = search::rungs(&exp, &reg, &cache, |r| {
        let s = run(&r.plan, &engine, &RunOptions::default()).unwrap();
        steps += s
            .outcomes
            .iter()
            .zip(&r.plan.instances)
            .filter(|(_, i)| i.node == "w")
            .filter_map(|(o, _)| match o {
                cedm_engine::Outcome::Ran(rec) => Some(steps_run(rec)),
                _ => None,
            })
            .sum::<f64>();
        s.ok()
    })
    .unwrap();
    assert_eq!(rungs.len(), 2);
    assert_eq!(rungs[0].candidates.len(), 4);
    // The best half by score (lower is better), ties by sweep order.
    let mut by: Vec<(f64, usize)> = rungs[0]
        .scores
        .iter()
        .enumerate()
        .map(|(i, (_, v))| (v.unwrap(), i))
        .collect();
    by.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut want: Vec<serde_json::Value> = by[..2]
        .iter()
        .map(|&(_, i)| rungs[0].scores[i].0.clone())
        .collect();
    want.sort_by_key(|v| v.as_i64());
    assert_eq!(rungs[0].promoted.as_ref().unwrap(), &want);
    assert_eq!(rungs[1].candidates, want);
    assert!(
        rungs[1].promoted.as_ref().unwrap().is_empty(),
        "the last rung is decided"
    );
    assert_eq!(
        steps,
        4.0 * 2.0 + 2.0 * 2.0,
        "rung 1 resumed from rung 0's results"
    );
    // Again: the same rungs and choices, all from the cache (nothing runs; status needs no run).
    let again = search::rungs(&exp, &reg, &cache, |_| true).unwrap();
    assert_eq!(again.len(), 2);
    assert_eq!(again[0].promoted, rungs[0].promoted);
    assert_eq!(again[1].scores, rungs[1].scores);
    // A fresh cache: rung 0 only, undecided.
    let fresh = Cache::open(d.path().join("b")).unwrap();
    let st = search::rungs(&exp, &reg, &fresh, |_| true).unwrap();
    assert_eq!(st.len(), 1);
    assert!(st[0].promoted.is_none());
}

#[test]
fn a_bad_search_section_is_a_diagnostic_with_its_line() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("exp.yaml");
    std::fs::write(
        &p,
        "name: sh\nsweep:\n  C: [1, 2]\nsearch: {over: K, budget: C, metric: nope, keep: 2}\nnodes:\n  w: {kind: toy/walk, params: {steps: \"${C}\"}}\n",
    )
    .unwrap();
    let Err(e) = expand(Experiment::load(&p).unwrap(), &toy::registry()) else {
        panic!("a bad search expanded");
    };
    let text = e.render_plain();
    for want in [
        "`K` is not a sweep variable",
        "`nope` is not a node",
        "fraction in (0, 1]",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    assert!(text.contains("exp.yaml:4"), "{text}");
}
