//! Behaviour of the store: publish, hit checks, corruption, verify, gc, export.

use std::collections::{BTreeMap, HashSet};
use std::fs;

use cedm_cache::{Cache, Digest, HitCheck, RunMeta, VerifyProblem};

fn publish(cache: &Cache, key: &str, files: &[(&str, &[u8])]) -> cedm_cache::Record {
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
            serde_json::json!({"a": 1}),
            BTreeMap::new(),
            BTreeMap::new(),
            RunMeta::default(),
        )
        .unwrap()
}

#[test]
fn publish_then_hit_with_outputs_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let r = publish(&cache, "k1", &[("a.txt", b"alpha"), ("sub/b.txt", b"beta")]);
    assert_eq!(r.outputs.len(), 2);
    assert_eq!(r.outputs["sub/b.txt"].digest, Digest::of_bytes(b"beta"));
    match cache.check(&r.key).unwrap() {
        HitCheck::Hit(h) => assert_eq!(h, r),
        other => panic!("expected a hit, got {other:?}"),
    }
    // Staging areas are gone after publishing.
    assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    assert!(matches!(
        cache.check(&Digest::of_bytes(b"other")).unwrap(),
        HitCheck::Miss
    ));
}

#[test]
fn identical_outputs_share_one_object() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let a = publish(&cache, "k1", &[("x", b"same")]);
    let b = publish(&cache, "k2", &[("x", b"same")]);
    assert_eq!(a.output_digest, b.output_digest);
    assert_eq!(cache.object_usage().0, 1);
}

#[test]
fn flipped_byte_is_detected_by_check_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let r = publish(&cache, "k1", &[("a.bin", &[7u8; 1000])]);
    let obj = cache.object_path(&r.outputs["a.bin"].digest);
    let mut perms = fs::metadata(&obj).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    fs::set_permissions(&obj, perms).unwrap();
    let mut bytes = fs::read(&obj).unwrap();
    bytes[500] ^= 1;
    // Write after a pause so the object's mtime is later than the record's.
    std::thread::sleep(std::time::Duration::from_millis(20));
    fs::write(&obj, &bytes).unwrap();

    let report = cache.verify();
    assert!(
        matches!(
            report.problems.as_slice(),
            [
                VerifyProblem::CorruptObject { .. },
                VerifyProblem::MissingObject { .. }
            ]
        ),
        "{:?}",
        report.problems
    );
    assert!(matches!(
        cache.check(&r.key).unwrap(),
        HitCheck::Damaged { .. }
    ));
    // Republishing the same bytes heals the store.
    publish(&cache, "k1", &[("a.bin", &[7u8; 1000])]);
    assert!(cache.verify().problems.is_empty());
    assert!(matches!(cache.check(&r.key).unwrap(), HitCheck::Hit(_)));
}

#[test]
fn check_rehashes_an_object_touched_after_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let r = publish(&cache, "k1", &[("a.bin", b"0123456789")]);
    let obj = cache.object_path(&r.outputs["a.bin"].digest);
    let mut perms = fs::metadata(&obj).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    fs::set_permissions(&obj, perms).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    fs::write(&obj, b"0123456780").unwrap();
    match cache.check(&r.key).unwrap() {
        HitCheck::Damaged { problems, .. } => {
            assert_eq!(problems[0].0, "a.bin");
            assert!(problems[0].1.contains("does not match"), "{problems:?}");
        }
        other => panic!("expected damage, got {other:?}"),
    }
}

#[test]
fn gc_keeps_referenced_objects_and_drops_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let a = publish(&cache, "k1", &[("x", b"one")]);
    let b = publish(&cache, "k2", &[("x", b"two")]);
    let keep: HashSet<Digest> = [a.key].into_iter().collect();
    // Freshly written objects are protected for a minute; age them.
    for r in [&a, &b] {
        let p = cache.object_path(&r.outputs["x"].digest);
        fs::File::options()
            .write(true)
            .open(&p)
            .or_else(|_| {
                let mut perms = fs::metadata(&p).unwrap().permissions();
                #[allow(clippy::permissions_set_readonly_false)]
                perms.set_readonly(false);
                fs::set_permissions(&p, perms).unwrap();
                fs::File::options().write(true).open(&p)
            })
            .unwrap()
            .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(600))
            .unwrap();
    }
    let dry = cache.gc(Some(&keep), true).unwrap();
    assert_eq!((dry.records, dry.objects), (1, 1));
    assert!(
        cache.record(&b.key).unwrap().is_some(),
        "dry run deletes nothing"
    );
    let rep = cache.gc(Some(&keep), false).unwrap();
    assert_eq!((rep.records, rep.objects, rep.bytes), (1, 1, 3));
    assert!(cache.record(&b.key).unwrap().is_none());
    assert!(matches!(cache.check(&a.key).unwrap(), HitCheck::Hit(_)));
}

#[test]
fn export_copies_outputs_and_record() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path().join("c")).unwrap();
    let r = publish(
        &cache,
        "k1",
        &[("labels.npy", b"npy"), ("g/grid.png", b"png")],
    );
    let out = dir.path().join("export");
    let files = cache.export(&r.key, &out).unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(fs::read(out.join("g/grid.png")).unwrap(), b"png");
    let rec: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("record.json")).unwrap()).unwrap();
    assert_eq!(rec["kind"], "test/kind");
}

#[test]
fn key_prefixes_resolve_uniquely() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let r = publish(&cache, "k1", &[("x", b"1")]);
    let hex = r.key.to_hex();
    assert_eq!(cache.resolve_prefix(&hex[..8]).unwrap(), r.key);
    assert!(cache.resolve_prefix("zz").is_err());
    assert!(cache.resolve_prefix("0000000").is_err());
}

#[test]
fn refs_remember_the_latest_key() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let k = Digest::of_bytes(b"k");
    assert_eq!(cache.get_ref("exp", "temi[C=10]"), None);
    cache.set_ref("exp", "temi[C=10]", &k).unwrap();
    assert_eq!(cache.get_ref("exp", "temi[C=10]"), Some(k));
    assert_eq!(
        cache.refs(),
        vec![("exp".to_string(), "temi[C=10]".to_string(), k)]
    );
}

#[test]
fn newer_cache_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("cedm-cache.json"), r#"{"format": 99}"#).unwrap();
    let err = Cache::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("newer"), "{err}");
}
