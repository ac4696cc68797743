//! The node reference is generated from the registry.

use crate::util::{Dir, stderr, stdout};

#[test]
fn docs_nodes_md_is_current() {
    let d = Dir::new();
    let mut c = d.cedm();
    c.env_remove("CEDM_TOY_KINDS");
    let o = c.args(["kinds", "--markdown"]).output().unwrap();
    assert!(o.status.success());
    let generated = stdout(&o);
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/nodes.md");
    if std::env::var_os("CEDM_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/nodes.md is stale: run `cargo run -- kinds --markdown > docs/nodes.md`"
    );
}

#[test]
fn kinds_lists_and_describes() {
    let d = Dir::new();
    let list = stdout(&d.run(&["kinds"]));
    assert!(list.contains("data/idx"), "{list}");
    let one = stdout(&d.run(&["kinds", "data/idx"]));
    assert!(
        one.contains("param images") && one.contains("required"),
        "{one}"
    );
    let bad = d.run(&["kinds", "nope/x"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn kinds_and_dag_print_json() {
    let d = Dir::new();
    // Every kind with its inputs and params; one kind alone; an unknown kind is a usage error.
    let o = d.run(&["kinds", "--json"]);
    assert!(o.status.success());
    let all: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let fd = all
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == "metrics/fd")
        .expect("metrics/fd listed");
    let boot = fd["params"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "bootstrap")
        .expect("bootstrap param");
    assert_eq!(boot["default"], 100, "{boot}");
    assert!(
        fd["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "samples" && s["required"] == true)
    );
    let one: serde_json::Value =
        serde_json::from_str(&stdout(&d.run(&["kinds", "metrics/fd", "--json"]))).unwrap();
    assert_eq!(&one, fd);
    let bad = d.run(&["kinds", "metrics/nope", "--json"]);
    assert_eq!(bad.status.code(), Some(2));

    // The planned graph: instances with their vars, params (defaults filled in) and inputs.
    d.write(
        "exp.yaml",
        "name: g\nsweep:\n  C: [2, 3]\nnodes:\n  base: {kind: toy/value, params: {value: 1}}\n  s: {kind: toy/add, inputs: {a: base}, params: {k: \"${C}\"}}\n",
    );
    let o = d.run(&["dag", "exp.yaml", "--format", "json"]);
    assert!(o.status.success());
    let g: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let s3 = g
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["instance"] == "s[C=3]")
        .expect("s[C=3]");
    assert_eq!(s3["inputs"]["a"], "base");
    assert_eq!(s3["params"]["k"], 3);
    assert_eq!(s3["vars"]["C"], 3);
    assert_eq!(g.as_array().unwrap().len(), 3);
}

/// `cedm completions SHELL`: a script naming the subcommands and options; bash's parses.
#[test]
fn completion_scripts_cover_the_commands() {
    let d = Dir::new();
    for shell in ["bash", "zsh", "fish"] {
        let o = d.run(&["completions", shell]);
        assert!(o.status.success(), "{shell}: {}", stderr(&o));
        let script = stdout(&o);
        let long = |o: &str| {
            if shell == "fish" {
                format!("-l {o}")
            } else {
                format!("--{o}")
            }
        };
        let words = ["status".to_string(), "report".into(), "completions".into()];
        for word in words.into_iter().chain([long("set"), long("experiment")]) {
            assert!(script.contains(&word), "{shell} script lacks {word}");
        }
        if shell == "bash" {
            let p = d.write("cedm.bash", &script);
            let check = std::process::Command::new("bash")
                .arg("-n")
                .arg(&p)
                .output()
                .expect("bash");
            assert!(check.status.success(), "{}", stderr(&check));
        }
    }
    let o = d.run(&["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(2));
}

/// docs/comparison.md stays true: every `cedm …` command it names exists and takes the long
/// options it names.
#[test]
fn comparison_table_names_real_commands() {
    let d = Dir::new();
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/comparison.md"),
    )
    .unwrap();
    let spans: Vec<&str> = doc
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| s.starts_with("cedm "))
        .collect();
    assert!(spans.len() >= 15, "{spans:?}");
    for span in spans {
        let words: Vec<&str> = span.split_whitespace().skip(1).collect();
        // The subcommand path: the leading lower-case words.
        let path: Vec<&str> = words
            .iter()
            .take_while(|w| w.chars().all(|c| c.is_ascii_lowercase()))
            .copied()
            .collect();
        let mut args = path.clone();
        args.push("--help");
        let o = d.run(&args);
        assert!(
            o.status.success(),
            "`{span}`: `cedm {}` fails",
            args.join(" ")
        );
        let help = stdout(&o);
        for w in &words {
            if let Some(opt) = w.strip_prefix("--") {
                let opt = opt.split('=').next().unwrap();
                assert!(
                    help.contains(&format!("--{opt}")),
                    "`{span}`: `cedm {}` has no --{opt}",
                    path.join(" ")
                );
            } else if w.len() == 2 && w.starts_with('-') {
                assert!(help.contains(&format!("{w},")), "`{span}`: no {w}");
            }
        }
    }
}
