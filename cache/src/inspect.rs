//! Inspection and maintenance: list, resolve, verify, gc, export.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rayon::prelude::*;
use serde::Serialize;

use crate::fsutil::{hostname, process_alive};
use crate::store::{StagingOwner, read_json};
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
}

fn list_sharded(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(shards) = fs::read_dir(dir) else {
        return out;
    };
    for s in shards.flatten() {
        if let Ok(files) = fs::read_dir(s.path()) {
            for f in files.flatten() {
                out.push(f.path());
            }
        }
    }
    out.sort();
    out
}

impl Cache {
    /// Every readable record, sorted by start time then key.
    pub fn records(&self) -> Vec<Record> {
        let mut v: Vec<Record> = list_sharded(&self.root.join("records"))
            .par_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .filter_map(|p| read_json::<Record>(p, "record").ok().flatten())
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
        if prefix.len() == 64 {
            if let Ok(d) = prefix.parse::<Digest>() {
                return Ok(d);
            }
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
                    if name.starts_with(&prefix) {
                        if let Some(stem) = name.strip_suffix(".json") {
                            if let Ok(d) = stem.parse::<Digest>() {
                                if !hits.contains(&d) {
                                    hits.push(d);
                                }
                            }
                        }
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
    pub fn verify(&self) -> VerifyReport {
        let objects = list_sharded(&self.root.join("objects"));
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
                match name.parse::<Digest>() {
                    Err(_) => (0, Some(VerifyProblem::StrayFile { path: p.clone() })),
                    Ok(want) => match Digest::of_file(p) {
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
        for (bytes, problem) in results {
            report.bytes += bytes;
            report.problems.extend(problem);
        }
        for p in list_sharded(&self.root.join("records")) {
            if p.extension().is_none_or(|e| e != "json") {
                continue;
            }
            report.records += 1;
            match read_json::<Record>(&p, "record") {
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
            let Ok(Some(r)) = read_json::<Record>(&p, "record") else {
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
        if let Ok(entries) = fs::read_dir(self.root.join("tmp")) {
            for e in entries.flatten() {
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
        if let Ok(entries) = fs::read_dir(self.root.join("work")) {
            for e in entries.flatten() {
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
        Ok(report)
    }

    /// Copy a record's outputs into `dir` under their names, with `record.json` beside them.
    ///
    /// # Errors
    /// When the key has no record or a copy fails.
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
            let dest = dir.join(name);
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
            }
            let src = self.object_path(&o.digest);
            fs::copy(&src, &dest).map_err(io_err("copying", &src))?;
            let mut perms = fs::metadata(&dest)
                .map_err(io_err("reading", &dest))?
                .permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            let _ = fs::set_permissions(&dest, perms);
            out.insert(name.clone(), dest);
        }
        let rp = dir.join("record.json");
        fs::write(&rp, serde_json::to_vec_pretty(&record).unwrap_or_default())
            .map_err(io_err("writing", &rp))?;
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
