//! Inspection and maintenance: list, resolve, verify, gc, export.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rayon::prelude::*;
use serde::Serialize;

use crate::fsutil::{hostname, process_alive};
use crate::store::{StagingOwner, read_json, read_record};
use crate::{Cache, CacheError, Digest, Record, io_err};

/// One problem found by [`Cache::verify`].
#[derive(Clone, Debug, Serialize)]
pub enum VerifyProblem {
    /// An object's content does not hash to its name (moved to quarantine).
    CorruptObject {
        /// The object's name.
        digest: Digest,
    },
    /// A record points at an object that is not there.
    MissingObject {
        /// The record's key.
        key: Digest,
        /// The output name.
        output: String,
        /// The missing object.
        digest: Digest,
    },
    /// A record file that does not parse.
    MalformedRecord {
        /// The file.
        path: PathBuf,
        /// Parser message.
        message: String,
    },
    /// A file in objects/ whose name is not a digest.
    StrayFile {
        /// The file.
        path: PathBuf,
    },
}

/// What [`Cache::verify`] found.
#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    /// Objects rehashed.
    pub objects: usize,
    /// Bytes rehashed.
    pub bytes: u64,
    /// Records checked.
    pub records: usize,
    /// Everything wrong.
    pub problems: Vec<VerifyProblem>,
}

/// What [`Cache::gc`] removed (or would remove with `dry_run`).
#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    /// Records deleted (not kept by any experiment given).
    pub records: usize,
    /// Objects deleted (no record or failure refers to them).
    pub objects: usize,
    /// Bytes freed by deleted objects.
    pub bytes: u64,
    /// Staging areas of dead processes removed.
    pub staging: usize,
    /// Work directories of keys with no live lock removed.
    pub work_dirs: usize,
    /// Trajectory index entries whose record is gone, removed.
    pub snapshot_entries: usize,
}

/// The regular files of a sharded directory (no symlink followed: [`crate::safety`]).
fn list_sharded(dir: &Path) -> Vec<PathBuf> {
    crate::safety::list_sharded(dir).files
}

impl Cache {
    /// Every readable record, sorted by start time then key.
    pub fn records(&self) -> Vec<Record> {
        let mut v: Vec<Record> = list_sharded(&self.root.join("records"))
            .par_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .filter_map(|p| read_record(p).ok().flatten())
            .collect();
        v.sort_by(|a, b| (&a.meta.started, a.key).cmp(&(&b.meta.started, b.key)));
        v
    }

    /// Resolve a full key or a unique key prefix (at least 4 hex characters) to a key.
    ///
    /// # Errors
    /// When nothing or several keys match.
    pub fn resolve_prefix(&self, prefix: &str) -> Result<Digest, CacheError> {
        let prefix = prefix.to_ascii_lowercase();
        if prefix.len() == 64
            && let Ok(d) = prefix.parse::<Digest>()
        {
            return Ok(d);
        }
        if prefix.len() < 4 || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(CacheError::Lookup(format!(
                "`{prefix}` is neither a node name nor a key prefix (4+ hex characters)"
            )));
        }
        let mut hits = Vec::new();
        for dir in ["records", "failures"] {
            let shard = self.root.join(dir).join(&prefix[..2]);
            if let Ok(files) = fs::read_dir(shard) {
                for f in files.flatten() {
                    let name = f.file_name().to_string_lossy().to_string();
                    if name.starts_with(&prefix)
                        && let Some(stem) = name.strip_suffix(".json")
                        && let Ok(d) = stem.parse::<Digest>()
                        && !hits.contains(&d)
                    {
                        hits.push(d);
                    }
                }
            }
        }
        match hits.len() {
            1 => Ok(hits[0]),
            0 => Err(CacheError::Lookup(format!(
                "no record has a key starting with `{prefix}`"
            ))),
            n => Err(CacheError::Lookup(format!(
                "`{prefix}` matches {n} keys; give more characters"
            ))),
        }
    }

    /// Rehash every object, check every record's objects. Corrupt objects go to quarantine.
    /// Symlinks and special files anywhere in `objects/` are reported as strays, never
    /// followed or opened.
    pub fn verify(&self) -> VerifyReport {
        let listing = crate::safety::list_sharded(&self.root.join("objects"));
        let objects = listing.files;
        let results: Vec<(u64, Option<VerifyProblem>)> = objects
            .par_iter()
            .map(|p| {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                let size = fs::metadata(p).map(|m| m.len()).unwrap_or(0);
                if name.starts_with(".tmp-") {
                    // A write killed before its rename: garbage for gc, not damage.
                    return (0, None);
                }
                // The name must be the digest in lowercase, in its own shard: anything else is
                // a stray (and quarantining by digest would move the genuine object).
                match crate::safety::object_name_digest(p).filter(|_| !name.is_empty()) {
                    None => (0, Some(VerifyProblem::StrayFile { path: p.clone() })),
                    Some(want) => match Digest::of_file(p) {
                        Ok(got) if got == want => (size, None),
                        _ => {
                            self.quarantine(&want);
                            (size, Some(VerifyProblem::CorruptObject { digest: want }))
                        }
                    },
                }
            })
            .collect();
        let mut report = VerifyReport {
            objects: objects.len(),
            ..VerifyReport::default()
        };
        report.problems.extend(
            listing
                .strays
                .into_iter()
                .map(|path| VerifyProblem::StrayFile { path }),
        );
        for (bytes, problem) in results {
            report.bytes += bytes;
            report.problems.extend(problem);
        }
        for p in list_sharded(&self.root.join("records")) {
            if p.extension().is_none_or(|e| e != "json") {
                continue;
            }
            report.records += 1;
            match read_record(&p) {
                Ok(Some(r)) => {
                    for (name, o) in &r.outputs {
                        if !self.object_path(&o.digest).exists() {
                            report.problems.push(VerifyProblem::MissingObject {
                                key: r.key,
                                output: name.clone(),
                                digest: o.digest,
                            });
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => report.problems.push(VerifyProblem::MalformedRecord {
                    path: p.clone(),
                    message: e.to_string(),
                }),
            }
        }
        report
    }

    /// Delete garbage: records not in `keep` (when given), objects no record or failure refers
    /// to, staging areas of dead processes, and work directories of finished or abandoned keys.
    ///
    /// # Errors
    /// Filesystem errors while deleting.
    pub fn gc(
        &self,
        keep: Option<&HashSet<Digest>>,
        dry_run: bool,
    ) -> Result<GcReport, CacheError> {
        let mut report = GcReport::default();
        let mut live_objects: HashSet<Digest> = HashSet::new();
        for p in list_sharded(&self.root.join("records")) {
            // Only valid records (whose key is their file name) are kept or deleted.
            let Ok(Some(r)) = read_record(&p) else {
                continue;
            };
            if keep.is_some_and(|k| !k.contains(&r.key)) {
                report.records += 1;
                if !dry_run {
                    fs::remove_file(&p).map_err(io_err("removing", &p))?;
                }
                continue;
            }
            live_objects.extend(r.outputs.values().map(|o| o.digest));
            live_objects.extend(r.meta.log);
            live_objects.extend(r.meta.resume);
        }
        for p in list_sharded(&self.root.join("failures")) {
            if let Ok(Some(f)) = read_json::<crate::Failure>(&p, "failure") {
                live_objects.extend(f.meta.log);
            }
        }
        for p in list_sharded(&self.root.join("objects")) {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let keep_it = name
                .parse::<Digest>()
                .is_ok_and(|d| live_objects.contains(&d));
            // Objects younger than a minute may belong to a publish in progress.
            let young = fs::metadata(&p)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| SystemTime::now().duration_since(m).ok())
                .is_some_and(|age| age < Duration::from_secs(60));
            if !keep_it && !young {
                report.objects += 1;
                report.bytes += fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
                if !dry_run {
                    fs::remove_file(&p).map_err(io_err("removing", &p))?;
                }
            }
        }
        // tmp/ and work/ must be real directories, and only real directories in them are
        // removed (remove_dir_all does not follow symlinks below them).
        let tmp = self.root.join("tmp");
        let entries = crate::safety::real_dir(&tmp)
            .then(|| fs::read_dir(&tmp).ok())
            .flatten();
        if let Some(entries) = entries {
            for e in entries.flatten() {
                if !e.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let owner: Option<StagingOwner> =
                    read_json(&e.path().join("owner.json"), "staging owner")
                        .ok()
                        .flatten();
                let dead = match owner {
                    Some(o) => o.host == hostname() && !process_alive(o.pid, o.start_time),
                    None => true,
                };
                if dead {
                    report.staging += 1;
                    if !dry_run {
                        let _ = fs::remove_dir_all(e.path());
                    }
                }
            }
        }
        let work = self.root.join("work");
        let entries = crate::safety::real_dir(&work)
            .then(|| fs::read_dir(&work).ok())
            .flatten();
        if let Some(entries) = entries {
            for e in entries.flatten() {
                if !e.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let Ok(key) = e.file_name().to_string_lossy().parse::<Digest>() else {
                    continue;
                };
                let done = self.record_path(&key).exists();
                let unlocked = matches!(self.lock_state(&key), crate::LockState::Free);
                // Keep checkpoints of unfinished keys: they are how a re-run resumes.
                if done && unlocked {
                    report.work_dirs += 1;
                    if !dry_run {
                        let _ = fs::remove_dir_all(e.path());
                    }
                }
            }
        }
        report.snapshot_entries = self.prune_snapshots(dry_run);
        Ok(report)
    }

    /// Copy a record's outputs into `dir` under their names, with `record.json` beside them.
    /// Only below `dir`: names are validated, no symlink is followed on either side, files
    /// get mode 0644 (umask applied), and every copy is checked against its digest
    /// ([`crate::safety::export_file`]).
    ///
    /// # Errors
    /// When the key has no (valid) record, an object is missing, damaged or not a regular
    /// file, or a copy fails.
    pub fn export(
        &self,
        key: &Digest,
        dir: &Path,
    ) -> Result<BTreeMap<String, PathBuf>, CacheError> {
        let record = self
            .record(key)?
            .ok_or_else(|| CacheError::Lookup(format!("no record for key {key}")))?;
        fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
        let mut out = BTreeMap::new();
        for (name, o) in &record.outputs {
            let src = self.object_file(&o.digest)?.ok_or_else(|| {
                CacheError::Lookup(format!("output `{name}`: object {} is missing", o.digest))
            })?;
            let dest = crate::safety::export_file(&src, &o.digest, dir, name)?;
            out.insert(name.clone(), dest);
        }
        crate::safety::export_bytes(
            &serde_json::to_vec_pretty(&record).unwrap_or_default(),
            dir,
            "record.json",
        )?;
        Ok(out)
    }

    /// Total bytes and count of objects.
    pub fn object_usage(&self) -> (usize, u64) {
        let objs = list_sharded(&self.root.join("objects"));
        let bytes = objs
            .iter()
            .map(|p| fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .sum();
        (objs.len(), bytes)
    }
}
