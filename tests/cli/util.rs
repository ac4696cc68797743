//! Helpers for tests that drive the real `cedm` binary: each test gets its own directory and
//! cache.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A scratch directory with an experiment file and a cache.
pub struct Dir {
    pub tmp: tempfile::TempDir,
}

impl Dir {
    pub fn new() -> Dir {
        Dir {
            tmp: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    pub fn cache(&self) -> PathBuf {
        self.path().join("cache")
    }

    /// Write a file relative to the directory.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }

    /// A `cedm` command on this directory's cache, with the toy kinds enabled.
    pub fn cedm(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cedm"));
        c.current_dir(self.path())
            .env("CEDM_TOY_KINDS", "1")
            .env("CEDM_CACHE", self.cache())
            .env("NO_COLOR", "1")
            .env_remove("CEDM_TEST_CRASH");
        c
    }

    /// Run `cedm` with arguments; returns the output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cedm().args(args).output().expect("spawn cedm")
    }
}

/// stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// The JSON events of a `--json` run.
pub fn events(o: &Output) -> Vec<serde_json::Value> {
    stdout(o)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("json event"))
        .collect()
}

/// Instances that had an event of this type, sorted.
pub fn with_event(evs: &[serde_json::Value], event: &str) -> Vec<String> {
    let mut v: Vec<String> = evs
        .iter()
        .filter(|e| e["event"] == event)
        .map(|e| e["instance"].as_str().unwrap_or("").to_string())
        .collect();
    v.sort();
    v
}

/// instance → output digest of a finished experiment, from `cedm status --json` + records.
pub fn output_digests(dir: &Dir, file: &str) -> std::collections::BTreeMap<String, String> {
    let ls = dir.run(&["cache", "ls", file, "--json"]);
    assert!(ls.status.success(), "{}", stderr(&ls));
    let records: Vec<serde_json::Value> = serde_json::from_str(&stdout(&ls)).unwrap();
    let st = dir.run(&["status", file, "--json"]);
    let statuses: Vec<serde_json::Value> = serde_json::from_str(&stdout(&st)).unwrap();
    let mut out = std::collections::BTreeMap::new();
    for s in statuses {
        if s["status"]["state"] != "cached" {
            continue;
        }
        let key = s["status"]["key"].as_str().unwrap();
        let r = records
            .iter()
            .find(|r| r["key"] == key)
            .expect("record of a cached key");
        out.insert(
            s["instance"].as_str().unwrap().to_string(),
            r["output_digest"].as_str().unwrap().to_string(),
        );
    }
    out
}
