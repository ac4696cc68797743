//! Reliability through the CLI (issue 16; docs/reliability.md): special files are refused
//! before they are read, sizes from headers and params are errors and never crashes, read-only
//! commands do not change the cache, a poisoned object is caught when it is consumed, a panic
//! is a one-line failure with its backtrace in the node's log, and bad YAML gets a short
//! diagnostic with a location.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::{Dir, stderr, stdout};

/// stderr with miette's wrapping undone (box characters and line breaks as single spaces).
fn flat(o: &std::process::Output) -> String {
    stderr(o)
        .replace(['│', '╭', '╰', '─', '×'], " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn mkfifo(p: &Path) {
    let ok = Command::new("mkfifo")
        .arg(p)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "mkfifo {} failed", p.display());
}

/// Run with a deadline: a hang is a failure, not a stuck CI job.
fn run_within(d: &Dir, args: &[&str], secs: u64) -> std::process::Output {
    let mut child = d
        .cedm()
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if t0.elapsed() > Duration::from_secs(secs) {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!(
                "cedm {args:?} hung for {secs} s\nstdout: {}\nstderr: {}",
                stdout(&o),
                stderr(&o)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn special_files_and_wrong_kinds_of_path_are_refused_before_they_are_read() {
    let d = Dir::new();
    mkfifo(&d.path().join("pipe.bin"));
    std::fs::create_dir_all(d.path().join("a_dir")).unwrap();
    let cases = [
        ("toy/file", "path: pipe.bin", "FIFO"),
        (
            "toy/file",
            "path: a_dir",
            "is a directory; expected a regular file",
        ),
        ("toy/file", "path: /dev/zero", "character device"),
        ("data/idx", "images: pipe.bin", "FIFO"),
        (
            "data/cifar",
            "dir: pipe.bin, variant: cifar10",
            "expected a directory",
        ),
        ("data/images", "path: /dev/zero", "character device"),
    ];
    for (kind, params, want) in cases {
        d.write(
            "exp.yaml",
            &format!("name: special\nnodes:\n  a: {{kind: {kind}, params: {{{params}}}}}\n"),
        );
        let st = run_within(&d, &["status", "exp.yaml"], 30);
        assert!(st.status.success(), "{kind}: {}", stderr(&st));
        let o = run_within(&d, &["run", "exp.yaml"], 30);
        assert_eq!(o.status.code(), Some(2), "{kind} {params}: {}", stderr(&o));
        assert!(flat(&o).contains(want), "{kind} {params}: {}", stderr(&o));
    }
    // The same for the command-line tools.
    let o = run_within(&d, &["fid", "pipe.bin", "a_dir"], 30);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(flat(&o).contains("FIFO"), "{}", stderr(&o));
    // A FIFO named like an image inside an image folder is skipped, not read.
    std::fs::create_dir_all(d.path().join("imgs")).unwrap();
    mkfifo(&d.path().join("imgs/0.png"));
    d.write(
        "exp.yaml",
        "name: special\nnodes:\n  a: {kind: data/images, params: {path: imgs}}\n",
    );
    let o = run_within(&d, &["run", "exp.yaml"], 30);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no .png/.jpg/.jpeg images"),
        "{}",
        stderr(&o)
    );
}

/// An IDX file whose header promises `dims` (no data behind it).
fn idx(d: &Dir, name: &str, dims: &[u32]) {
    let mut b = vec![0u8, 0, 8, dims.len() as u8];
    for x in dims {
        b.extend(x.to_be_bytes());
    }
    b.extend([0u8; 64]);
    std::fs::write(d.path().join(name), b).unwrap();
}

#[test]
fn sizes_from_headers_and_params_are_errors_not_crashes() {
    let d = Dir::new();
    // Headers: a product that overflows, one beyond the data, zero images, 0×0 images.
    idx(&d, "huge.idx", &[1 << 22, 1 << 21, 1 << 21]);
    idx(&d, "big.idx", &[60000, 28, 28]);
    idx(&d, "none.idx", &[0, 28, 28]);
    idx(&d, "empty.idx", &[4, 0, 0]);
    for (file, want) in [
        ("huge.idx", "more than cedm handles"),
        ("big.idx", "truncated"),
        ("none.idx", "at least one non-empty image"),
        ("empty.idx", "at least one non-empty image"),
    ] {
        d.write(
            "exp.yaml",
            &format!("name: sizes\nnodes:\n  a: {{kind: data/idx, params: {{images: {file}}}}}\n"),
        );
        let o = run_within(&d, &["run", "exp.yaml"], 60);
        assert_eq!(o.status.code(), Some(1), "{file}: {}", stderr(&o));
        let err = flat(&o);
        assert!(err.contains(want), "{file}: {err}");
        assert!(!err.contains("panicked"), "{file}: {err}");
    }
    // Params: every impossible size is a diagnostic before anything runs (exit 2).
    idx(&d, "ok.idx", &[2, 2, 2]);
    let cases = [
        ("data/idx", "images: ok.idx, pad: 100000000", "pad"),
        (
            "data/idx",
            "images: ok.idx, resolution: 1000000",
            "resolution",
        ),
        (
            "data/images",
            "path: ok.idx, resolution: 99999999999",
            "resolution",
        ),
        (
            "features/vit",
            "model: custom, arch: {patch: 0, dim: 8, depth: 1, heads: 0, grid: 2}, weights: ok.idx",
            "arch",
        ),
    ];
    for (kind, params, want) in cases {
        d.write(
            "exp.yaml",
            &format!("name: sizes\nnodes:\n  a: {{kind: {kind}, params: {{{params}}}}}\n"),
        );
        let o = run_within(&d, &["status", "exp.yaml"], 30);
        assert_eq!(o.status.code(), Some(2), "{kind} {params}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains(want) && !err.contains("panicked"),
            "{kind}: {err}"
        );
    }
    // A sweep grid of 10¹² points is refused at once.
    let vars: String = (0..12)
        .map(|i| format!("  v{i}: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\n"))
        .collect();
    d.write(
        "exp.yaml",
        &format!(
            "name: grid\nsweep:\n{vars}nodes:\n  a: {{kind: toy/value, params: {{value: 1}}}}\n"
        ),
    );
    let o = run_within(&d, &["status", "exp.yaml"], 30);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("sweep expands to more than"),
        "{}",
        stderr(&o)
    );
}

fn object_of(d: &Dir, node: &str) -> std::path::PathBuf {
    let o = d.run(&["cache", "show", node, "exp.yaml", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let digest = v["record"]["outputs"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    d.cache().join("objects").join(&digest[..2]).join(&digest)
}

#[test]
fn status_only_reports_damage_and_an_object_changed_in_place_is_caught() {
    use std::os::unix::fs::PermissionsExt;
    let d = Dir::new();
    d.write(
        "exp.yaml",
        "name: poison\nnodes:\n  base: {kind: toy/value, params: {value: 1}}\n  sum: {kind: toy/add, inputs: {a: base}, params: {k: 1}}\n",
    );
    assert!(d.run(&["run", "exp.yaml"]).status.success());
    let obj = object_of(&d, "base");
    // Change it in place (same size), then set its mtime back: only the ctime moves.
    let before = std::fs::metadata(&obj).unwrap();
    let mut bytes = std::fs::read(&obj).unwrap();
    let last = bytes.len() - 2;
    bytes[last] = if bytes[last] == b'1' { b'7' } else { b'1' };
    std::fs::set_permissions(&obj, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&obj, &bytes).unwrap();
    let f = std::fs::File::options().write(true).open(&obj).unwrap();
    f.set_modified(before.modified().unwrap()).unwrap();
    drop(f);
    std::fs::set_permissions(&obj, std::fs::Permissions::from_mode(0o444)).unwrap();
    assert_eq!(
        std::fs::metadata(&obj).unwrap().modified().unwrap(),
        before.modified().unwrap()
    );
    // status says it will rerun, and leaves the object where it is (read-only).
    let st = d.run(&["status", "exp.yaml"]);
    assert!(st.status.success(), "{}", stderr(&st));
    assert!(stdout(&st).contains("damaged"), "{}", stdout(&st));
    assert!(obj.exists(), "status moved the object");
    assert!(!d.cache().join("quarantine").exists(), "status quarantined");
    // run repairs: the damaged object is quarantined and recomputed; the downstream node
    // consumes the repaired bytes.
    let o = d.run(&["run", "exp.yaml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(d.cache().join("quarantine").exists());
    assert_eq!(std::fs::read(&obj).unwrap().len(), bytes.len());
    assert_ne!(
        std::fs::read(&obj).unwrap(),
        bytes,
        "the poisoned bytes are still there"
    );
}

#[test]
fn a_panic_is_one_line_on_the_terminal_and_its_backtrace_is_in_the_log() {
    let d = Dir::new();
    d.write(
        "exp.yaml",
        "name: panics\nnodes:\n  base: {kind: toy/value, params: {value: 1}}\n  boom: {kind: toy/add, inputs: {a: base}, params: {panic: true}}\n",
    );
    let o = d.run(&["run", "exp.yaml"]);
    assert_eq!(o.status.code(), Some(1));
    let err = flat(&o);
    assert!(err.contains("node panicked: asked to panic"), "{err}");
    assert!(!err.contains("second line of the message"), "{err}");
    assert!(!err.contains("panicked at"), "{err}");
    assert!(!err.contains("RUST_BACKTRACE"), "{err}");
    let show = d.run(&["cache", "show", "boom", "exp.yaml"]);
    let text = stdout(&show);
    assert!(text.contains("asked to panic"), "{text}");
}

#[test]
fn bad_yaml_gets_a_short_diagnostic_with_a_location() {
    let d = Dir::new();
    // Every problem of a node's params at once.
    d.write(
        "exp.yaml",
        "name: many\nnodes:\n  a: {kind: toy/add, inputs: {a: b}, params: {k: x, sleep_ms: -1, nope: 1}}\n  b: {kind: toy/value, params: {value: 1}}\n",
    );
    let o = d.run(&["status", "exp.yaml"]);
    assert_eq!(o.status.code(), Some(2));
    let err = flat(&o);
    for want in ["`k`", "sleep_ms", "nope"] {
        assert!(err.contains(want), "{want} missing: {err}");
    }
    // Two documents.
    d.write(
        "exp.yaml",
        "name: a\nnodes:\n  a: {kind: toy/value, params: {value: 1}}\n---\nname: b\n",
    );
    let o = d.run(&["status", "exp.yaml"]);
    assert_eq!(o.status.code(), Some(2));
    let err = flat(&o);
    assert!(err.contains("one YAML document"), "{err}");
    assert!(!err.contains("from_str_multiple"), "{err}");
    // Not UTF-8.
    std::fs::write(
        d.path().join("exp.yaml"),
        b"name: x\nnodes:\n  a: {kind: toy/value, params: {value: 1}}\n  # caf\xe9\n",
    )
    .unwrap();
    let o = d.run(&["status", "exp.yaml"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("not UTF-8") && err.contains("exp.yaml:4"),
        "{err}"
    );
    // A 100 000-deep line: a short message, not the line.
    let deep = format!("name: x\nnodes: {}\n", "[".repeat(100_000));
    d.write("exp.yaml", &deep);
    let o = run_within(&d, &["status", "exp.yaml"], 30);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.len() < 4000, "{} bytes of diagnostic", err.len());
    assert!(err.contains("line 2"), "{err}");
}

#[test]
fn sighup_stops_like_sigint() {
    let d = Dir::new();
    d.write(
        "exp.yaml",
        "name: hup\nnodes:\n  base: {kind: toy/value, params: {value: 1}}\n  slow: {kind: toy/add, inputs: {a: base}, params: {sleep_ms: 20000}}\n",
    );
    let mut child = d
        .cedm()
        .args(["run", "exp.yaml"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let _ = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status();
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "SIGHUP did not stop the run"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130));
    // No lock stays behind: the next run starts at once and finishes the work.
    assert!(std::fs::read_dir(d.cache().join("locks")).map_or(true, |mut r| r.next().is_none()));
}

#[test]
fn a_full_disk_exits_3_and_leaves_no_lock_behind() {
    // A 1 MiB tmpfs holds the cache (needs root, as CI has; skipped loudly otherwise).
    let d = Dir::new();
    let mnt = d.path().join("small");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mnt)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("*** FULL-DISK TEST SKIPPED: cannot mount a tmpfs (not root?) ***");
        return;
    }
    let cache = mnt.join("cache");
    d.write(
        "exp.yaml",
        "name: full\nnodes:\n  a: {kind: toy/value, params: {value: 1}}\n  b: {kind: toy/add, inputs: {a: a}, params: {k: 2}}\n",
    );
    let run = |args: &[&str]| {
        d.cedm()
            .env("CEDM_CACHE", &cache)
            .args(args)
            .output()
            .unwrap()
    };
    assert!(run(&["status", "exp.yaml"]).status.success());
    // Fill the disk.
    let _ = std::fs::write(mnt.join("filler"), vec![0u8; 2 << 20]);
    let o = run(&["run", "exp.yaml"]);
    let code = o.status.code();
    let locks: Vec<_> = std::fs::read_dir(cache.join("locks"))
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    let _ = Command::new("umount").arg(&mnt).status();
    assert_eq!(code, Some(3), "{}", stderr(&o));
    assert!(
        flat(&o).contains("No space left on device"),
        "{}",
        stderr(&o)
    );
    assert!(locks.is_empty(), "locks left behind: {locks:?}");
}
