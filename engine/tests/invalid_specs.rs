//! Every malformed experiment in `specs/invalid/` gets a diagnostic pointing at the right line,
//! saying the right thing; its full rendering is kept as a snapshot beside it
//! (`CEDM_BLESS=1 cargo test -p cedm-engine --test invalid_specs` rewrites the snapshots).

use std::path::Path;

use cedm_engine::{EngineError, Experiment, SpecError, expand, toy};

fn diagnose(name: &str, src: &str) -> SpecError {
    let shown = Path::new(name);
    let exp = match Experiment::parse(shown, src) {
        Ok(e) => e,
        Err(e) => return e,
    };
    match expand(exp, &toy::registry()) {
        Ok(_) => panic!("{name}: expected a diagnostic, the experiment was accepted"),
        Err(e) => e,
    }
}

fn header(src: &str, key: &str) -> String {
    src.lines()
        .find_map(|l| l.strip_prefix(&format!("# {key}: ")))
        .unwrap_or_else(|| panic!("missing `# {key}:` header"))
        .to_string()
}

#[test]
fn every_invalid_spec_has_its_diagnostic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/specs/invalid");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "only {} invalid specs", files.len());
    let bless = std::env::var_os("CEDM_BLESS").is_some();
    let mut failures = Vec::new();
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let src = std::fs::read_to_string(f).unwrap();
        let err = diagnose(&name, &src);
        let rendered = err.render_plain();
        let want_line: usize = header(&src, "expect-line").parse().unwrap();
        let want_text = header(&src, "expect");
        let line = err.line_of(&err.problems[0]);
        if line != want_line {
            failures.push(format!(
                "{name}: first problem on line {line}, expected {want_line}\n{rendered}"
            ));
        }
        if !rendered.contains(&want_text) {
            failures.push(format!(
                "{name}: diagnostic lacks `{want_text}`\n{rendered}"
            ));
        }
        // The rendering shows the file and the line of the first problem.
        if !rendered.contains(&format!("{name}:{want_line}:")) {
            failures.push(format!(
                "{name}: rendering does not point at {name}:{want_line}\n{rendered}"
            ));
        }
        let snap = f.with_extension("snap");
        if bless {
            std::fs::write(&snap, &rendered).unwrap();
        } else {
            match std::fs::read_to_string(&snap) {
                Ok(want) if want == rendered => {}
                Ok(want) => failures.push(format!(
                    "{name}: snapshot differs\n--- want\n{want}\n--- got\n{rendered}"
                )),
                Err(_) => failures.push(format!(
                    "{name}: no snapshot {} (run with CEDM_BLESS=1)",
                    snap.display()
                )),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn an_unreadable_file_is_an_io_error() {
    let err = Experiment::load(Path::new("/nonexistent/exp.yaml")).unwrap_err();
    assert!(matches!(err, EngineError::Read { .. }));
    assert!(err.to_string().contains("/nonexistent/exp.yaml"));
}
