//! The engine through the CLI: sweeps, statuses, bad input, corruption, concurrent runs.

use crate::util::{Dir, events, stderr, stdout, with_event};

fn sweep(cs: &str) -> String {
    format!(
        "name: sweep
sweep:
  C: [{cs}]
nodes:
  base: {{kind: toy/value, params: {{value: 1}}}}
  scaled: {{kind: toy/add, inputs: {{a: base}}, params: {{k: \"${{C}}\", sleep_ms: 20}}}}
  other: {{kind: toy/add, inputs: {{a: base}}, params: {{k: 7}}}}
  total: {{kind: toy/add, inputs: {{a: scaled, b: other}}}}
"
    )
}

#[test]
fn a_grown_sweep_runs_only_the_new_point() {
    let d = Dir::new();
    d.write("exp.yaml", &sweep("2, 3"));
    let o = d.run(&["run", "exp.yaml", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(with_event(&events(&o), "started").len(), 6);

    let again = d.run(&["run", "exp.yaml", "--json"]);
    assert!(with_event(&events(&again), "started").is_empty());
    assert_eq!(with_event(&events(&again), "cache_hit").len(), 6);

    d.write("exp.yaml", &sweep("2, 3, 4"));
    let st = d.run(&["status", "exp.yaml"]);
    let text = stdout(&st);
    assert!(
        text.contains("scaled[C=4]  toy/add    will run (new)"),
        "{text}"
    );
    assert!(
        text.contains("total[C=4]   toy/add    waits on scaled[C=4]; will run (new)"),
        "{text}"
    );
    let grown = d.run(&["run", "exp.yaml", "--json"]);
    assert!(grown.status.success());
    assert_eq!(
        with_event(&events(&grown), "started"),
        ["scaled[C=4]", "total[C=4]"]
    );
}

#[test]
fn invalid_experiments_exit_2_with_a_diagnostic() {
    let d = Dir::new();
    d.write("bad.yaml", "name: bad\nnodes:\n  a:\n    kind: toy/valu\n");
    let o = d.run(&["run", "bad.yaml"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("unknown kind `toy/valu`"), "{err}");
    assert!(err.contains("bad.yaml:4:11"), "{err}");
    assert!(err.contains("did you mean `toy/value`?"), "{err}");
    let o = d.run(&["status", "missing.yaml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot read experiment missing.yaml"));
}

#[test]
fn a_missing_input_file_stops_the_run_before_anything_runs() {
    let d = Dir::new();
    d.write(
        "exp.yaml",
        "name: files\nnodes:\n  ok: {kind: toy/value, params: {value: 1}}\n  data: {kind: toy/file, params: {path: data/train.bin}}\n",
    );
    let st = d.run(&["status", "exp.yaml"]);
    assert!(st.status.success());
    assert!(
        stdout(&st).contains("missing file `path`"),
        "{}",
        stdout(&st)
    );
    let o = d.run(&["run", "exp.yaml", "--json"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(with_event(&events(&o), "started").is_empty());
    let err = stderr(&o);
    assert!(
        err.contains("cannot read `path`") && err.contains("data/train.bin"),
        "{err}"
    );
}

#[test]
fn failures_exit_1_keep_successes_and_show_their_log() {
    let d = Dir::new();
    d.write(
        "exp.yaml",
        "name: f\nnodes:\n  a: {kind: toy/value, params: {value: 1}}\n  bad: {kind: toy/add, inputs: {a: a}, params: {fail: true}}\n  after: {kind: toy/add, inputs: {a: bad}}\n",
    );
    let o = d.run(&["run", "exp.yaml"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("bad failed: asked to fail"), "{err}");
    assert!(err.contains("after not run: bad failed"), "{err}");
    let show = d.run(&["cache", "show", "bad", "exp.yaml"]);
    let text = stdout(&show);
    assert!(
        text.contains("last failure") && text.contains("asked to fail"),
        "{text}"
    );
    let st = stdout(&d.run(&["status", "exp.yaml"]));
    assert!(st.contains("a    ") && st.contains("cached"), "{st}");
    assert!(st.contains("will run (last run failed)"), "{st}");
}

#[test]
fn a_flipped_byte_is_reported_by_verify_and_recomputed_by_run() {
    let d = Dir::new();
    d.write("exp.yaml", &sweep("2"));
    assert!(d.run(&["run", "exp.yaml"]).status.success());
    assert!(d.run(&["cache", "verify"]).status.success());
    // Corrupt the object holding `total`'s value (10 = 1+2+7).
    let show = stdout(&d.run(&["cache", "show", "total[C=2]", "exp.yaml"]));
    let obj = show
        .lines()
        .find(|l| l.trim_start().starts_with("value.txt"))
        .and_then(|l| l.split_whitespace().last())
        .expect("object path")
        .to_string();
    let mut perms = std::fs::metadata(&obj).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&obj, perms).unwrap();
    let mut bytes = std::fs::read(&obj).unwrap();
    bytes[0] ^= 0x01;
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&obj, &bytes).unwrap();

    let v = d.run(&["cache", "verify"]);
    assert_eq!(v.status.code(), Some(1));
    let vt = stdout(&v);
    assert!(
        vt.contains("corrupt object") && vt.contains("problems"),
        "{vt}"
    );

    let o = d.run(&["run", "exp.yaml", "--json"]);
    assert!(o.status.success());
    assert_eq!(with_event(&events(&o), "started"), ["total[C=2]"]);
    assert!(d.run(&["cache", "verify"]).status.success());
}

#[test]
fn two_runs_at_once_compute_every_node_exactly_once() {
    let d = Dir::new();
    d.write(
        "exp.yaml",
        "name: twice
sweep:
  C: [1, 2, 3]
nodes:
  base: {kind: toy/value, params: {value: 1}}
  slow: {kind: toy/add, inputs: {a: base}, params: {k: \"${C}\", sleep_ms: 300}}
  sum: {kind: toy/add, inputs: {a: slow, b: base}, params: {sleep_ms: 100}}
",
    );
    let spawn = || {
        d.cedm()
            .args(["run", "exp.yaml", "--json", "--jobs", "2"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let a = spawn();
    let b = spawn();
    let oa = a.wait_with_output().unwrap();
    let ob = b.wait_with_output().unwrap();
    assert!(oa.status.success(), "{}", stderr(&oa));
    assert!(ob.status.success(), "{}", stderr(&ob));
    let mut started = with_event(&events(&oa), "started");
    started.extend(with_event(&events(&ob), "started"));
    started.sort();
    assert_eq!(
        started,
        [
            "base",
            "slow[C=1]",
            "slow[C=2]",
            "slow[C=3]",
            "sum[C=1]",
            "sum[C=2]",
            "sum[C=3]"
        ]
    );
    // Each process ends with all 7 results.
    for o in [&oa, &ob] {
        let evs = events(o);
        let done = with_event(&evs, "started").len() + with_event(&evs, "cache_hit").len();
        assert_eq!(done, 7, "{}", stdout(o));
    }
}

#[test]
fn dag_formats() {
    let d = Dir::new();
    d.write("exp.yaml", &sweep("2, 3"));
    let text = stdout(&d.run(&["dag", "exp.yaml"]));
    assert!(
        text.contains("total[C=3] (toy/add)  a ← scaled[C=3], b ← other"),
        "{text}"
    );
    let dot = stdout(&d.run(&["dag", "exp.yaml", "--format", "dot"]));
    assert!(
        dot.starts_with("digraph \"sweep\"") && dot.matches("->").count() == 7,
        "{dot}"
    );
    let mm = stdout(&d.run(&["dag", "exp.yaml", "--format", "mermaid"]));
    assert!(
        mm.starts_with("flowchart LR") && mm.matches("-->").count() == 7,
        "{mm}"
    );
}

#[test]
fn gc_keeps_what_the_experiment_uses() {
    let d = Dir::new();
    d.write("exp.yaml", &sweep("2, 3"));
    assert!(d.run(&["run", "exp.yaml"]).status.success());
    d.write("exp.yaml", &sweep("2"));
    let o = d.run(&["cache", "gc", "--keep", "exp.yaml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("deleted 2 records"), "{}", stdout(&o));
    let again = d.run(&["run", "exp.yaml", "--json"]);
    assert!(with_event(&events(&again), "started").is_empty());
}

#[test]
fn cache_ls_piped_into_a_closed_pipe_is_not_an_error() {
    let d = Dir::new();
    d.write("exp.yaml", &sweep("1, 2, 3, 4, 5, 6, 7, 8"));
    assert!(d.run(&["run", "exp.yaml"]).status.success());
    let mut child = d
        .cedm()
        .args(["cache", "ls"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    assert!(status.success());
}

/// `search:` through the CLI: `cedm status` says what rung 1 waits for, `cedm run` trains the
/// rungs in turn, and `cedm status` then explains the promotion with the scores.
#[test]
fn a_search_runs_rung_by_rung_and_status_explains_promotions() {
    let d = Dir::new();
    d.write(
        "sh.yaml",
        "name: sh\nsweep:\n  C: [1, 2, 3, 4]\n  L: [2, 4]\nsearch: {over: C, budget: L, metric: s, keep: 0.5}\nnodes:\n  w: {kind: toy/walk, params: {steps: \"${L}\", start: \"${C}\"}}\n  s: {kind: toy/score, inputs: {a: w}}\n",
    );
    let st = stdout(&d.run(&["status", "sh.yaml"]));
    assert!(
        st.contains("rung 1/2 (L = 2)") && st.contains("waits"),
        "{st}"
    );
    assert!(!st.contains("rung 2/2"), "{st}");
    let o = d.run(&["run", "sh.yaml", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // 4 walks at L=2, 2 at L=4 (the promoted half), each metric once.
    assert_eq!(with_event(&events(&o), "started").len(), 4 + 4 + 2 + 2);
    let st = stdout(&d.run(&["status", "sh.yaml"]));
    // Scores of the walk from C at 2 steps: ((C·31 + 7)·31 + 8) mod 1000.
    assert!(
        st.contains("s by C = [1: 186, 2: 147, 3: 108, 4: 69] → promoted C = 3, 4"),
        "{st}"
    );
    assert!(
        st.contains("rung 2/2 (L = 4)") && st.contains("best C = 3"),
        "{st}"
    );
    let again = d.run(&["run", "sh.yaml", "--json"]);
    assert!(with_event(&events(&again), "started").is_empty());
}

#[test]
fn every_shipped_experiment_plans() {
    // experiments/*.yaml parse, validate against the node registry and expand their sweeps
    // (what `cedm dag` does, with no cache and no input file read).
    let d = Dir::new();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml") {
            let o = d.run(&["dag", p.to_str().unwrap()]);
            assert!(o.status.success(), "{}: {}", p.display(), stderr(&o));
            assert!(!stdout(&o).is_empty());
            n += 1;
        }
    }
    assert!(n >= 8, "{n} experiments in {}", dir.display());
}

/// The instance labels a status table lists (its rows, not the totals line).
fn status_labels(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| !l.contains(" nodes ("))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect()
}

#[test]
fn status_changed_lists_only_what_is_not_cached() {
    let d = Dir::new();
    d.write("exp.yaml", &sweep("2"));
    assert!(d.run(&["run", "exp.yaml"]).status.success());
    d.write("exp.yaml", &sweep("2, 3"));
    let o = d.run(&["status", "exp.yaml", "--changed"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let listed = status_labels(&out);
    // The new point's two instances; the cached ones are counted, not listed.
    assert_eq!(listed, ["scaled[C=3]", "total[C=3]"], "{out}");
    assert!(
        out.contains("4 cached, 1 will run, 1 wait on them"),
        "{out}"
    );
    let o = d.run(&["status", "exp.yaml", "--changed", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2, "{v}");
}

#[test]
fn dry_run_honours_only_and_a_bad_sweep_label_lists_the_instances() {
    let d = Dir::new();
    d.write("exp.yaml", &sweep("2, 3"));
    let o = d.run(&["run", "exp.yaml", "--dry-run", "--only", "scaled[C=3]"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let listed = status_labels(&out);
    assert_eq!(listed, ["base", "scaled[C=3]"], "{out}");
    assert!(
        out.contains("2 nodes (2 sweep points): 0 cached, 1 will run, 1 wait on them"),
        "{out}"
    );

    let o = d.run(&["run", "exp.yaml", "--only", "scaled[C=7]"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace("│ ", "");
    assert!(err.contains("is not a sweep point of `scaled`"), "{err}");
    assert!(err.contains("scaled[C=2], scaled[C=3]"), "{err}");
}

#[test]
fn quiet_runs_print_no_progress_only_the_result() {
    let d = Dir::new();
    d.write("exp.yaml", &sweep("2, 3"));
    let o = d.run(&["run", "exp.yaml", "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(!err.contains('▶') && !err.contains('✓'), "{err}");
    assert!(err.contains("sweep: 6 ran, 0 cached"), "{err}");
    let loud = d.run(&["run", "exp.yaml", "--force", "base"]);
    assert!(stderr(&loud).contains('▶'), "{}", stderr(&loud));
    // -q and -v contradict each other: a usage error.
    assert_eq!(
        d.run(&["run", "exp.yaml", "-q", "-v"]).status.code(),
        Some(2)
    );
}

/// `-S` / `-m` through the CLI: a run with overrides leaves the file-written experiment cached,
/// and a bad override is a diagnostic that shows it (exit 2).
#[test]
fn overrides_are_keyed_as_if_written_in_the_file() {
    let d = Dir::new();
    d.write("exp.yaml", &sweep("2"));
    let o = d.run(&["run", "exp.yaml", "-m", "C=3,4", "-S", "other.params.k=8"]);
    assert!(o.status.success(), "{}", stderr(&o));
    d.write(
        "written.yaml",
        &sweep("3, 4").replace("params: {k: 7}", "params: {k: 8}"),
    );
    let o = d.run(&["status", "written.yaml", "--changed"]);
    let out = stdout(&o);
    assert!(status_labels(&out).is_empty(), "{out}");
    assert!(out.contains("6 cached"), "{out}");
    // `dag --format json` shows the overridden params.
    let o = d.run(&["dag", "exp.yaml", "-S", "C=5", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let labels: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["instance"].as_str().unwrap())
        .collect();
    assert!(labels.contains(&"scaled[C=5]"), "{labels:?}");
    let o = d.run(&["status", "exp.yaml", "-S", "other.params.k=abc"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("-S other.params.k=abc"), "{err}");
    let o = d.run(&["status", "exp.yaml", "-S", "C"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("has no `=`"), "{}", stderr(&o));
}

/// Commands that only look never create a cache, and say where caches are instead.
#[test]
fn read_only_commands_create_no_cache() {
    let d = Dir::new();
    let exp = d.write("sub/exp.yaml", &sweep("2"));
    // Without CEDM_CACHE: the cache of sub/exp.yaml is sub/.cedm.
    let bare = |args: &[&str]| {
        d.cedm()
            .env_remove("CEDM_CACHE")
            .args(args)
            .output()
            .unwrap()
    };
    for args in [
        vec!["cache", "ls"],
        vec!["cache", "show", "a059f741"],
        vec!["cache", "verify"],
        vec!["cache", "ls", "sub/exp.yaml"],
        vec!["cache", "export", "base", "out", "-e", "sub/exp.yaml"],
        vec!["status", "sub/exp.yaml"],
        vec!["run", "sub/exp.yaml", "--dry-run"],
    ] {
        let o = bare(&args);
        assert!(!d.path().join(".cedm").exists(), "{args:?} created .cedm");
        assert!(
            !d.path().join("sub/.cedm").exists(),
            "{args:?} created sub/.cedm"
        );
        if args[0] == "cache" {
            assert_eq!(o.status.code(), Some(2), "{args:?}");
            assert!(stderr(&o).contains("no cedm cache at"), "{}", stderr(&o));
        } else {
            assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        }
    }
    assert!(bare(&["run", exp.to_str().unwrap()]).status.success());
    // Now the hint names the cache it found, and every cache command takes the file the same way.
    let o = bare(&["cache", "show", "ffffffff"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("sub/.cedm"), "{}", stderr(&o));
    for args in [
        vec!["cache", "show", "base", "sub/exp.yaml"],
        vec!["cache", "show", "base", "-e", "sub/exp.yaml"],
        vec!["cache", "ls", "-e", "sub/exp.yaml"],
        vec!["cache", "export", "base", "out", "sub/exp.yaml"],
    ] {
        let o = bare(&args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    }
    assert!(d.path().join("out/value.txt").is_file());
}

/// Live scalars: `--json` progress events carry them as fields, the engine appends them to the
/// node's stream in the cache while it runs (kept when it fails), and `cedm watch` draws them.
#[test]
fn live_scalars_reach_json_events_and_watch() {
    let d = Dir::new();
    let exp = "name: live
nodes:
  base: {kind: toy/value, params: {value: 1}}
  slow: {kind: toy/add, inputs: {a: base}, params: {k: 3, sleep_ms: 30, fail: true}}
";
    d.write("exp.yaml", exp);
    let o = d.run(&["watch", "exp.yaml", "--once"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("none reporting yet"), "{}", stdout(&o));
    let o = d.run(&["run", "exp.yaml", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let evs = events(&o);
    let fields: Vec<&serde_json::Value> = evs
        .iter()
        .filter(|e| e["event"] == "progress" && e["instance"] == "slow")
        .filter_map(|e| e.get("scalars"))
        .collect();
    assert!(!fields.is_empty(), "{evs:?}");
    assert_eq!(fields[0]["k"], 3.0, "{:?}", fields[0]);
    // The failed node's stream stays in its work directory: watch draws it.
    let o = d.run(&["watch", "exp.yaml", "--once"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("slow  3 step"), "{out}");
    let square = out
        .lines()
        .find(|l| l.trim_start().starts_with("square"))
        .unwrap_or_else(|| panic!("{out}"));
    // The last step always writes: 3 steps, the last squared is 9.
    assert!(square.contains("  9  ["), "{square}");
    // The same stream as TensorBoard events: one run directory per node, a version record, then
    // one record per line of the stream, each framed with its length and checksums.
    let o = d.run(&["watch", "exp.yaml", "--once", "--tensorboard", "tb"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let files: Vec<_> = std::fs::read_dir(d.path().join("tb/slow"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_string_lossy().to_string();
    assert!(name.starts_with("events.out.tfevents."), "{name}");
    let bytes = std::fs::read(&files[0]).unwrap();
    let mut records = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let len = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
        records.push(&bytes[at + 12..at + 12 + len]);
        at += 16 + len;
    }
    assert_eq!(at, bytes.len());
    let stream = std::fs::read_dir(d.cache().join("work"))
        .unwrap()
        .map(|e| e.unwrap().path().join("scalars.jsonl"))
        .find(|p| p.is_file())
        .unwrap();
    let lines = std::fs::read_to_string(stream).unwrap().lines().count();
    assert_eq!(records.len(), 1 + lines, "{records:?}");
    assert!(records[0].ends_with(b"brain.Event:2"));
    assert!(
        records[1..]
            .iter()
            .all(|r| r.windows(6).any(|w| w == b"square"))
    );
    // A second look appends nothing new.
    assert!(
        d.run(&["watch", "exp.yaml", "--once", "--tensorboard", "tb"])
            .status
            .success()
    );
    assert_eq!(std::fs::read(&files[0]).unwrap(), bytes);
    d.write("exp.yaml", &exp.replace(", fail: true", ""));
    assert!(d.run(&["run", "exp.yaml"]).status.success());
    let out = stdout(&d.run(&["watch", "exp.yaml", "--once"]));
    assert!(out.contains("all 2 nodes of exp.yaml are cached"), "{out}");
}

/// Plain progress lines (stderr not a terminal) say where the run is (`[settled/planned]`),
/// the node's percent, its rate once and an ETA.
#[test]
fn progress_lines_have_position_percent_rate_and_eta() {
    let d = Dir::new();
    d.write(
        "exp.yaml",
        "name: p\nnodes:\n  base: {kind: toy/value, params: {value: 1}}\n  slow: {kind: toy/add, inputs: {a: base}, params: {k: 3, sleep_ms: 1500}}\n",
    );
    let o = d.run(&["run", "exp.yaml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("✓ [1/2] base"), "{err}");
    let paced = err
        .lines()
        .find(|l| l.contains("[1/2] slow") && l.contains("step/s, ETA"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(paced.contains("%, "), "{paced}");
    assert_eq!(paced.matches("/s").count(), 1, "{paced}");
    assert!(err.contains("✓ [2/2] slow"), "{err}");
}

/// Without the `remote` feature, the remote commands say how to get it (exit 2).
#[cfg(not(feature = "remote"))]
#[test]
fn remote_commands_without_the_feature_say_how_to_build_it() {
    let d = Dir::new();
    d.write("exp.yaml", &sweep("2"));
    assert!(d.run(&["run", "exp.yaml"]).status.success());
    let o = d.run(&["cache", "push", "exp.yaml", "--remote", "s3://b/p"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--features remote"), "{}", stderr(&o));
}

/// Records of a finished experiment by instance: (device it ran on, its stats).
fn devices_and_stats(
    d: &Dir,
    file: &str,
) -> std::collections::BTreeMap<String, (String, serde_json::Value)> {
    let ls = d.run(&["cache", "ls", file, "--json"]);
    assert!(ls.status.success(), "{}", stderr(&ls));
    let records: Vec<serde_json::Value> = serde_json::from_str(&stdout(&ls)).unwrap();
    records
        .iter()
        .map(|r| {
            (
                r["meta"]["instance"].as_str().unwrap_or("").to_string(),
                (
                    r["meta"]["device"].as_str().unwrap_or("").to_string(),
                    r["meta"]["stats"].clone(),
                ),
            )
        })
        .collect()
}

/// Where a node's `started` and `finished` events are in the event stream.
fn span(evs: &[serde_json::Value], n: &str) -> (usize, usize) {
    let at = |event: &str| {
        evs.iter()
            .position(|e| e["event"] == event && e["instance"] == n)
            .unwrap_or_else(|| panic!("no {event} event for {n}"))
    };
    (at("started"), at("finished"))
}

/// Whether the nodes ran at the same time: every one started before any finished.
fn all_overlapped(evs: &[serde_json::Value], nodes: &[&str]) -> bool {
    let spans: Vec<(usize, usize)> = nodes.iter().map(|n| span(evs, n)).collect();
    let last_start = spans.iter().map(|s| s.0).max().unwrap();
    let first_end = spans.iter().map(|s| s.1).min().unwrap();
    last_start < first_end
}

/// Whether the nodes ran one after another: none started before the previous one finished.
fn none_overlapped(evs: &[serde_json::Value], nodes: &[&str]) -> bool {
    let mut spans: Vec<(usize, usize)> = nodes.iter().map(|n| span(evs, n)).collect();
    spans.sort();
    spans.windows(2).all(|w| w[0].1 < w[1].0)
}

#[test]
fn gpu_slots_pin_trainings_to_their_own_device_and_let_small_nodes_share() {
    // Toy nodes that only pretend to use a GPU (the scheduler cannot tell): three "trainings"
    // holding a device alone, three small nodes that declare 3 000 MiB and report a measured
    // peak of 4 000 MiB.
    let d = Dir::new();
    d.write(
        "exp.yaml",
        "name: slots
nodes:
  base: {kind: toy/value, params: {value: 1}}
  t0: {kind: toy/add, inputs: {a: base}, params: {k: 0, sleep_ms: 1500, gpus: 1}}
  t1: {kind: toy/add, inputs: {a: base}, params: {k: 1, sleep_ms: 1500, gpus: 1}}
  t2: {kind: toy/add, inputs: {a: base}, params: {k: 2, sleep_ms: 1500, gpus: 1}}
  s0: {kind: toy/add, inputs: {a: base}, params: {k: 10, sleep_ms: 1500, gpus: 1, gpu_mem_mb: 3000, gpu_peak_mb: 4000}}
  s1: {kind: toy/add, inputs: {a: base}, params: {k: 11, sleep_ms: 1500, gpus: 1, gpu_mem_mb: 3000, gpu_peak_mb: 4000}}
  s2: {kind: toy/add, inputs: {a: base}, params: {k: 12, sleep_ms: 1500, gpus: 1, gpu_mem_mb: 3000, gpu_peak_mb: 4000}}
",
    );
    let trainings = ["t0", "t1", "t2"];
    let small = ["s0", "s1", "s2"];
    // Three slots: the trainings run at once, each on its own device.
    let o = d.run(&[
        "run", "exp.yaml", "--only", "t0", "t1", "t2", "--device", "cuda", "--gpus", "0,1,2", "-j",
        "3", "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(all_overlapped(&events(&o), &trainings), "{}", stdout(&o));
    let recs = devices_and_stats(&d, "exp.yaml");
    let mut devs: Vec<&str> = trainings.iter().map(|t| recs[*t].0.as_str()).collect();
    devs.sort_unstable();
    assert_eq!(devs, ["cuda:0", "cuda:1", "cuda:2"]);
    // One slot (the device alone, here device 5): one training at a time, all on it.
    let o = d.run(&[
        "run", "exp.yaml", "--only", "t0", "t1", "t2", "--device", "cuda:5", "-j", "3", "--json",
        "--force", "t0", "t1", "t2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(none_overlapped(&events(&o), &trainings), "{}", stdout(&o));
    let recs = devices_and_stats(&d, "exp.yaml");
    for t in trainings {
        assert_eq!(recs[t].0, "cuda:5");
    }

    // Small nodes on one 10 GiB device: their declared 3 000 MiB fit three at once.
    let o = d.run(&[
        "run",
        "exp.yaml",
        "--only",
        "s0",
        "s1",
        "s2",
        "--device",
        "cuda",
        "--gpus",
        "0",
        "--gpu-mem",
        "10G",
        "-j",
        "3",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(all_overlapped(&events(&o), &small), "{}", stdout(&o));
    // Each record keeps the peak it measured.
    let recs = devices_and_stats(&d, "exp.yaml");
    for s in small {
        assert_eq!(recs[s].0, "cuda:0");
        assert_eq!(recs[s].1["gpu_peak_mb"], 4000.0, "{s}: {:?}", recs[s].1);
    }
    // Rerun: each now asks for its measured peak and a quarter more (5 000 MiB), so only two
    // fit on 10 GiB at once — and without a device size nothing shares.
    let o = d.run(&[
        "run",
        "exp.yaml",
        "--only",
        "s0",
        "s1",
        "s2",
        "--device",
        "cuda",
        "--gpus",
        "0",
        "--gpu-mem",
        "10G",
        "-j",
        "3",
        "--json",
        "--force",
        "s0",
        "s1",
        "s2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let evs = events(&o);
    assert!(!all_overlapped(&evs, &small), "{}", stdout(&o));
    let o = d.run(&[
        "run", "exp.yaml", "--only", "s0", "s1", "s2", "--device", "cuda", "--gpus", "0", "-j",
        "3", "--json", "--force", "s0", "s1", "s2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(none_overlapped(&events(&o), &small), "{}", stdout(&o));

    // Bad values are usage errors.
    for (flag, value) in [
        ("--gpus", "0,0"),
        ("--gpus", "x"),
        ("--gpus", ""),
        ("--gpu-mem", "big"),
    ] {
        let o = d.run(&["run", "exp.yaml", "--device", "cuda", flag, value]);
        assert_eq!(o.status.code(), Some(2), "{flag} {value}: {}", stderr(&o));
    }
}
