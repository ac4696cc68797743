//! Path safety of cache maintenance (issue 16, docs/reliability.md): whatever a record or the
//! cache tree contains — crafted output names, symlinks anywhere — `gc`, `verify`, `export`,
//! quarantine and lookups never read, write or delete outside the cache or the export target.
//! Crafted records are fuzzed (proptest); every test checks a sentinel tree outside the cache.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use cedm_cache::{Cache, Digest, HitCheck, Record, RunMeta, VerifyProblem};
use proptest::prelude::*;

fn publish(cache: &Cache, key: &str, files: &[(&str, &[u8])]) -> Record {
    let staging = cache.stage().unwrap();
    for (name, bytes) in files {
        let p = staging.out_dir().join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, bytes).unwrap();
    }
    cache
        .publish(
            staging,
            Digest::of_bytes(key.as_bytes()),
            "test/kind",
            1,
            serde_json::json!({}),
            BTreeMap::new(),
            BTreeMap::new(),
            RunMeta::default(),
        )
        .unwrap()
}

/// A tree outside the cache that nothing may touch: its files, sizes and contents.
struct Sentinel {
    root: PathBuf,
}

impl Sentinel {
    fn new(at: &Path) -> Sentinel {
        let root = at.join("outside");
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::write(root.join("precious.txt"), b"do not touch").unwrap();
        fs::write(root.join("sub/deep.txt"), b"nor this").unwrap();
        // Named like an object and like a staging area, so that a followed link would match.
        let d = Digest::of_bytes(b"x").to_hex();
        fs::write(root.join(&d), b"looks like an object").unwrap();
        Sentinel { root }
    }

    fn snapshot(&self) -> BTreeMap<PathBuf, (Vec<u8>, u32)> {
        fn walk(p: &Path, out: &mut BTreeMap<PathBuf, (Vec<u8>, u32)>) {
            for e in fs::read_dir(p).unwrap().flatten() {
                let m = fs::symlink_metadata(e.path()).unwrap();
                if m.is_dir() {
                    walk(&e.path(), out);
                } else {
                    let bytes = fs::read(e.path()).unwrap_or_default();
                    out.insert(e.path(), (bytes, m.permissions().mode()));
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(&self.root, &mut out);
        out
    }
}

/// Write a record file for `key` as a colleague with write access could.
fn plant_record(cache: &Cache, key: &Digest, outputs: serde_json::Value, fix_digest: bool) {
    let mut r = serde_json::json!({
        "format": 1, "key": key, "kind": "test/kind", "kind_version": 1, "params": {},
        "inputs": {}, "files": {}, "outputs": outputs,
        "output_digest": Digest::of_bytes(b"whatever"), "meta": RunMeta::default(),
    });
    if fix_digest
        && let Ok(parsed) =
            serde_json::from_value::<BTreeMap<String, cedm_cache::OutputRef>>(r["outputs"].clone())
    {
        r["output_digest"] = serde_json::json!(cedm_cache::combined_digest(&parsed));
    }
    let p = cache.record_path(key);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, serde_json::to_vec(&r).unwrap()).unwrap();
}

#[test]
fn crafted_output_names_never_escape_the_export_target() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path().join("c")).unwrap();
    let s = Sentinel::new(dir.path());
    let before = s.snapshot();
    let real = publish(&cache, "k1", &[("ok.txt", b"fine")]);
    let obj = real.outputs["ok.txt"].clone();
    let target = dir.path().join("export");
    for name in [
        "/tmp/../".to_string() + &s.root.join("precious.txt").display().to_string(),
        s.root.join("precious.txt").display().to_string(),
        "../outside/precious.txt".into(),
        "a/../../outside/precious.txt".into(),
        "record.json".into(),
    ] {
        let key = Digest::of_bytes(name.as_bytes());
        plant_record(&cache, &key, serde_json::json!({ name.clone(): obj }), true);
        assert!(cache.export(&key, &target).is_err(), "{name}");
        assert!(
            matches!(cache.check(&key).unwrap(), HitCheck::Miss),
            "{name}"
        );
    }
    let report = cache.verify();
    assert!(
        report
            .problems
            .iter()
            .any(|p| matches!(p, VerifyProblem::MalformedRecord { .. }))
    );
    cache.gc(Some(&HashSet::new()), false).unwrap();
    assert_eq!(s.snapshot(), before);
}

#[test]
fn symlinks_anywhere_in_the_tree_are_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("c");
    let cache = Cache::open(&root).unwrap();
    let s = Sentinel::new(dir.path());
    let r = publish(&cache, "k1", &[("a.txt", b"alpha")]);
    // A shard directory, an object, tmp/, work/ and quarantine/ pointing outside.
    let fake = Digest::of_bytes(b"x").to_hex();
    symlink(&s.root, root.join("objects").join(&fake[..2])).unwrap();
    let hex = r.outputs["a.txt"].digest.to_hex();
    let obj = root.join("objects").join(&hex[..2]).join(&hex);
    fs::set_permissions(&obj, fs::Permissions::from_mode(0o644)).unwrap();
    fs::remove_file(&obj).unwrap();
    symlink(s.root.join("precious.txt"), &obj).unwrap();
    let _ = fs::remove_dir_all(root.join("tmp"));
    symlink(&s.root, root.join("tmp")).unwrap();
    symlink(&s.root, root.join("work")).unwrap();
    symlink(&s.root, root.join("quarantine")).unwrap();
    let before = s.snapshot();

    // The symlinked object is damage, never data.
    assert!(matches!(
        cache.check(&r.key).unwrap(),
        HitCheck::Damaged { .. }
    ));
    assert!(cache.read_object(&r.outputs["a.txt"].digest).is_err());
    assert!(cache.export(&r.key, &dir.path().join("export")).is_err());
    let report = cache.verify();
    assert!(
        report
            .problems
            .iter()
            .any(|p| matches!(p, VerifyProblem::StrayFile { .. })),
        "{:?}",
        report.problems
    );
    cache.gc(Some(&HashSet::new()), false).unwrap();
    cache.gc(None, false).unwrap();
    assert_eq!(s.snapshot(), before, "something outside the cache changed");
    // Publishing through a symlinked shard is refused.
    let staging = cache.stage();
    if let Ok(staging) = staging {
        let p = staging.out_dir().join("x");
        fs::write(&p, b"x").unwrap();
        assert!(
            cache
                .publish(
                    staging,
                    Digest::of_bytes(b"k2"),
                    "t",
                    1,
                    serde_json::json!({}),
                    BTreeMap::new(),
                    BTreeMap::new(),
                    RunMeta::default(),
                )
                .is_err()
        );
    }
    assert_eq!(s.snapshot(), before, "something outside the cache changed");
}

#[test]
fn exports_get_normal_permissions_and_never_write_through_links() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path().join("c")).unwrap();
    let s = Sentinel::new(dir.path());
    let r = publish(&cache, "k1", &[("g/grid.png", b"png"), ("a.txt", b"alpha")]);
    let out = dir.path().join("export");
    cache.export(&r.key, &out).unwrap();
    for f in ["g/grid.png", "a.txt", "record.json"] {
        let mode = fs::metadata(out.join(f)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode & !0o644, 0, "{f}: mode {mode:o}");
        assert_ne!(mode & 0o600, 0, "{f}: mode {mode:o}");
    }
    // Links planted in the target: the export replaces a file link, refuses a directory link.
    let before = s.snapshot();
    let out2 = dir.path().join("export2");
    fs::create_dir_all(&out2).unwrap();
    symlink(s.root.join("precious.txt"), out2.join("a.txt")).unwrap();
    symlink(s.root.join("precious.txt"), out2.join("record.json")).unwrap();
    symlink(&s.root, out2.join("g")).unwrap();
    assert!(cache.export(&r.key, &out2).is_err());
    assert_eq!(s.snapshot(), before);
}

#[test]
fn read_only_views_report_damage_without_quarantine() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let r = publish(&cache, "k1", &[("a.bin", &[7u8; 100])]);
    let obj = cache.object_path(&r.outputs["a.bin"].digest);
    // Past the filesystem's timestamp granularity, so the change is later than the record.
    std::thread::sleep(std::time::Duration::from_millis(20));
    fs::set_permissions(&obj, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&obj, [8u8; 100]).unwrap();
    let ro = cache.read_only();
    assert!(matches!(
        ro.check(&r.key).unwrap(),
        HitCheck::Damaged { .. }
    ));
    assert!(obj.exists() && !dir.path().join("quarantine").exists());
    assert!(matches!(
        cache.check(&r.key).unwrap(),
        HitCheck::Damaged { .. }
    ));
    assert!(!obj.exists() && dir.path().join("quarantine").exists());
}

#[test]
fn an_object_rewritten_in_place_with_its_mtime_restored_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let r = publish(&cache, "k1", &[("a.bin", &[7u8; 100])]);
    let obj = cache.object_path(&r.outputs["a.bin"].digest);
    let mtime = fs::metadata(&obj).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    fs::set_permissions(&obj, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&obj, [8u8; 100]).unwrap();
    let f = fs::File::options().write(true).open(&obj).unwrap();
    f.set_modified(mtime).unwrap();
    drop(f);
    assert_eq!(fs::metadata(&obj).unwrap().modified().unwrap(), mtime);
    assert!(matches!(
        cache.read_only().check(&r.key).unwrap(),
        HitCheck::Damaged { .. }
    ));
}

#[test]
fn special_files_are_refused_when_hashed() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path().join("c")).unwrap();
    let fifo = dir.path().join("pipe");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let e = cache.hash_path(&fifo).unwrap_err().to_string();
    assert!(e.contains("FIFO"), "{e}");
    assert!(cache.hash_path(Path::new("/dev/null")).is_err());
    // A directory with a FIFO and a symlink loop inside hashes its regular files only.
    let d = dir.path().join("data");
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("a"), b"a").unwrap();
    symlink(&d, d.join("loop")).unwrap();
    std::process::Command::new("mkfifo")
        .arg(d.join("p"))
        .status()
        .unwrap();
    let r = cache.hash_path(&d).unwrap();
    assert_eq!(r.size, 1);
}

fn output_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z/.]{0,12}",
        Just("..".to_string()),
        Just("/".to_string()),
        "(\\.\\./){1,4}outside/precious\\.txt",
        "/[a-z]{1,6}/[a-z.]{1,8}",
        "[a-z]{1,4}/\\.\\./\\.\\./[a-z]{1,4}",
        "[ -~]{1,10}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// Records with arbitrary output names, digests (real, absent, crafted) and sizes: export,
    /// check, verify and gc never change anything outside the cache and the target.
    #[test]
    fn fuzzed_records_never_reach_outside(
        names in prop::collection::vec(output_name(), 1..4),
        sizes in prop::collection::vec(0u64..100, 1..4),
        fix in any::<bool>(),
        real_digest in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path().join("c")).unwrap();
        let s = Sentinel::new(dir.path());
        let real = publish(&cache, "k1", &[("ok.txt", b"fine")]);
        let before = s.snapshot();
        let mut outputs = serde_json::Map::new();
        for (i, n) in names.iter().enumerate() {
            let digest = if real_digest { real.outputs["ok.txt"].digest } else { Digest::of_bytes(b"x") };
            outputs.insert(n.clone(), serde_json::json!({"digest": digest, "size": sizes[i % sizes.len()]}));
        }
        let key = Digest::of_bytes(format!("{names:?}{sizes:?}").as_bytes());
        plant_record(&cache, &key, serde_json::Value::Object(outputs), fix);
        let target = dir.path().join("export");
        if let Ok(files) = cache.export(&key, &target) {
            for p in files.values() {
                prop_assert!(p.starts_with(&target), "{} outside the target", p.display());
            }
        }
        let _ = cache.check(&key);
        let _ = cache.verify();
        let _ = cache.gc(Some(&HashSet::new()), false);
        prop_assert_eq!(s.snapshot(), before);
    }
}

/// A cache directory whose creation was cut short (no marker yet, at most the marker's temporary
/// file) is an empty cache to commands that only look, and nothing is written; a foreign
/// directory is not a cache.
#[test]
fn a_cache_cut_short_before_its_marker_is_an_empty_cache() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("c");
    assert!(cedm_cache::Cache::open_existing(&root).unwrap().is_none());
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join(".tmp-host-1-0-0"), b"{").unwrap();
    let c = cedm_cache::Cache::open_existing(&root)
        .unwrap()
        .expect("a cache");
    assert!(c.is_read_only() && c.records().is_empty());
    assert!(!root.join("cedm-cache.json").exists());
    std::fs::write(root.join("notes.txt"), b"mine").unwrap();
    assert!(cedm_cache::Cache::open_existing(&root).unwrap().is_none());
}
