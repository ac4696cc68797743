//! Command-line overrides (`-S`, `-m`): an overridden experiment is keyed exactly as the file
//! that says the same, and a bad override is reported like a bad value in the file.

use std::path::Path;

use cedm_cache::Cache;
use cedm_engine::event::Collect;
use cedm_engine::overrides::Override;
use cedm_engine::{Engine, Experiment, Plan, RunOptions, Status, expand, run, status, toy};

const BASE: &str = "name: ov
vars:
  v: 10
sweep:
  C: [2, 3]
nodes:
  base:
    kind: toy/value
    params: {value: \"${v}\"}
  scaled:
    kind: toy/add
    inputs: {a: base}
    params: {k: \"${C}\"}
  other:
    kind: toy/add
    inputs: {a: base}
    params: {k: 1}
";

fn write(dir: &Path, name: &str, yaml: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, yaml).unwrap();
    p
}

fn plan_with(path: &Path, ovs: &[Override]) -> Result<Plan, String> {
    let exp = Experiment::load_with(path, ovs).map_err(|e| match e {
        cedm_engine::EngineError::Spec(s) => s.render_plain(),
        other => format!("{other:?}"),
    })?;
    expand(exp, &toy::registry()).map_err(|e| e.render_plain())
}

fn err(path: &Path, ovs: &[Override]) -> String {
    match plan_with(path, ovs) {
        Ok(_) => panic!("{ovs:?} was accepted"),
        Err(e) => e,
    }
}

fn set(s: &str) -> Override {
    Override::parse(s, false).unwrap()
}
fn multi(s: &str) -> Override {
    Override::parse(s, true).unwrap()
}

/// Run the file-written experiment, then check that the overridden one has the same labels
/// and is entirely cached under the same keys.
fn same_as_written(written: &str, ovs: &[Override]) {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path().join("cache")).unwrap();
    let w = plan_with(&write(dir.path(), "written.yaml", written), &[]).unwrap();
    let reg = toy::registry();
    let events = Collect::default();
    let engine = Engine {
        cache: &cache,
        registry: &reg,
        reporter: &events,
    };
    assert!(run(&w, &engine, &RunOptions::default()).unwrap().ok());
    let o = plan_with(&write(dir.path(), "base.yaml", BASE), ovs).unwrap();
    let labels =
        |p: &Plan| -> Vec<String> { p.instances.iter().map(|i| i.label.clone()).collect() };
    assert_eq!(labels(&o), labels(&w));
    let keys = |p: &Plan| -> Vec<String> {
        status(p, &cache, &[])
            .into_iter()
            .map(|s| match s {
                Status::Cached { key } => key.to_string(),
                other => panic!("not cached: {other:?}"),
            })
            .collect()
    };
    assert_eq!(keys(&o), keys(&w));
}

#[test]
fn a_scalar_on_a_sweep_variable_sweeps_over_it_alone() {
    same_as_written(&BASE.replace("C: [2, 3]", "C: [4]"), &[set("C=4")]);
    same_as_written(&BASE.replace("C: [2, 3]", "C: [4, 5]"), &[set("C=[4, 5]")]);
}

#[test]
fn multirun_lists_and_grids() {
    same_as_written(
        &BASE.replace("C: [2, 3]", "C: [2, 3, 4]"),
        &[multi("C=2,3,4")],
    );
    // A variable swept from the command line, beside an existing axis: a grid.
    let grid = BASE
        .replace("vars:\n  v: 10\n", "")
        .replace("C: [2, 3]", "C: [2, 3]\n  v: [10, 20]");
    same_as_written(&grid, &[multi("v=10,20")]);
}

#[test]
fn node_params_and_variables() {
    same_as_written(
        &BASE.replace("params: {k: 1}", "params: {k: 7}"),
        &[set("other.params.k=7")],
    );
    same_as_written(
        &BASE.replace("params: {k: 1}", "params: {k: 7}"),
        &[set("nodes.other.params.k=7")],
    );
    same_as_written(&BASE.replace("v: 10", "v: 12"), &[set("v=12")]);
    // A param the file does not write is added.
    same_as_written(
        &BASE.replace(
            "params: {value: \"${v}\"}",
            "params: {value: \"${v}\", note: hi}",
        ),
        &[set("base.params.note=hi")],
    );
    // The later of two overrides of one path wins.
    same_as_written(&BASE.replace("v: 10", "v: 13"), &[set("v=12"), set("v=13")]);
}

#[test]
fn sweeping_a_node_param_adds_a_sweep_variable() {
    let written = BASE
        .replace("C: [2, 3]", "C: [2, 3]\n  k: [1, 5]")
        .replace("params: {k: 1}", "params: {k: \"${k}\"}");
    same_as_written(&written, &[multi("other.params.k=1,5")]);
}

#[test]
fn bad_overrides_point_at_the_command_line_text() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "base.yaml", BASE);
    // A value the kind rejects: the kind's own diagnostic, labelling the override.
    let e = err(&p, &[set("other.params.k=abc")]);
    assert!(e.contains("-S other.params.k=abc"), "{e}");
    assert!(e.contains("other"), "{e}");
    // A misspelt node: a suggestion and the names there are.
    let e = err(&p, &[set("scaeld.params.k=1")]);
    assert!(e.contains("did you mean `scaled`"), "{e}");
    // An unknown param: the kind's unknown-param diagnostic.
    let e = err(&p, &[set("other.params.kk=1")]);
    assert!(e.contains("kk"), "{e}");
    assert!(e.contains("-S other.params.kk=1"), "{e}");
    // A value that is not YAML.
    let e = err(&p, &[set("v=[1, 2")]);
    assert!(e.contains("not a YAML value"), "{e}");
    // Sweeping a field through a name the experiment already uses.
    let e = err(&p, &[multi("other.params.v=1,2")]);
    assert!(e.contains("already has"), "{e}");
    // A path through a scalar.
    let e = err(&p, &[set("other.kind.x=1")]);
    assert!(e.contains("not a mapping"), "{e}");
}
