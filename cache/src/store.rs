//! Objects, records, staging and atomic publishing.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsutil::{self, atomic_write, crash_point, fsync_dir, unique_name};
use crate::record::{Failure, OutputRef, RECORD_FORMAT, Record, RunMeta, combined_digest};
use crate::{Cache, CacheError, Digest, FileRef, InputRef, io_err};

/// A staging area for one node run: the node writes its outputs into [`Staging::out_dir`].
///
/// Nothing in a staging area is ever read as a result; if the process dies, `gc` removes it.
#[derive(Debug)]
pub struct Staging {
    dir: PathBuf,
    out: PathBuf,
}

impl Staging {
    /// Where the node writes its output files.
    pub fn out_dir(&self) -> &Path {
        &self.out
    }

    /// The whole staging directory (outputs live in `out/`; a node's log beside it).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct StagingOwner {
    pub host: String,
    pub pid: u32,
    pub start_time: Option<u64>,
}

/// The result of checking a record before trusting it as a hit.
#[derive(Debug)]
pub enum HitCheck {
    /// No record for this key.
    Miss,
    /// A record whose objects are all present and intact.
    Hit(Record),
    /// A record exists but some objects are missing or corrupt (they were moved to quarantine).
    Damaged {
        /// The record.
        record: Record,
        /// Output names and what is wrong with each.
        problems: Vec<(String, String)>,
    },
}

#[derive(Serialize, Deserialize)]
struct RefFile {
    instance: String,
    key: Digest,
}

impl Cache {
    /// Create a fresh staging area.
    ///
    /// # Errors
    /// Filesystem errors.
    pub fn stage(&self) -> Result<Staging, CacheError> {
        let dir = self.root.join("tmp").join(unique_name(""));
        let out = dir.join("out");
        fs::create_dir_all(&out).map_err(io_err("creating", &out))?;
        let owner = StagingOwner {
            host: fsutil::hostname(),
            pid: std::process::id(),
            start_time: fsutil::process_start_time(std::process::id()),
        };
        let p = dir.join("owner.json");
        fs::write(&p, serde_json::to_vec(&owner).unwrap_or_default())
            .map_err(io_err("writing", &p))?;
        Ok(Staging { dir, out })
    }

    /// Store one file as an object (moving it), deduplicating by content. Returns its ref.
    ///
    /// # Errors
    /// Filesystem errors.
    pub fn put_object(&self, file: &Path) -> Result<OutputRef, CacheError> {
        let digest = Digest::of_file(file).map_err(io_err("hashing", file))?;
        let size = fs::metadata(file).map_err(io_err("reading", file))?.len();
        let dest = self.object_path(&digest);
        // The shard directories must be real: an object is never published through a symlink.
        for d in [
            self.root.join("objects"),
            dest.parent().unwrap_or(&self.root).to_path_buf(),
        ] {
            if fs::symlink_metadata(&d).is_ok_and(|m| !m.file_type().is_dir()) {
                return Err(CacheError::Io {
                    op: "publishing into",
                    path: d,
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "not a real directory (a symlink inside the cache?)",
                    ),
                });
            }
        }
        let intact = match fs::symlink_metadata(&dest) {
            // An object of the same name may exist from an earlier run; trust it only if its
            // bytes really are these (a corrupt copy is replaced, never reused).
            Ok(m) if m.len() == size => Digest::of_file(&dest).is_ok_and(|d| d == digest),
            _ => false,
        };
        if intact {
            fs::remove_file(file).map_err(io_err("removing", file))?;
        } else {
            let dir = dest.parent().unwrap_or(&self.root).to_path_buf();
            fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
            {
                let f = fs::File::open(file).map_err(io_err("opening", file))?;
                f.sync_all().map_err(io_err("syncing", file))?;
            }
            let mut perms = fs::metadata(file)
                .map_err(io_err("reading", file))?
                .permissions();
            perms.set_readonly(true);
            fs::set_permissions(file, perms).map_err(io_err("chmod", file))?;
            fs::rename(file, &dest).map_err(io_err("renaming into", &dest))?;
            fsync_dir(&dir).map_err(io_err("syncing", &dir))?;
        }
        Ok(OutputRef { digest, size })
    }

    /// Store bytes as an object (for logs). Returns the digest.
    ///
    /// # Errors
    /// Filesystem errors.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest, CacheError> {
        let digest = Digest::of_bytes(bytes);
        let dest = self.object_path(&digest);
        if fs::metadata(&dest).is_ok_and(|m| m.len() == bytes.len() as u64) {
            return Ok(digest);
        }
        atomic_write(&dest, bytes).map_err(io_err("writing", &dest))?;
        Ok(digest)
    }

    /// Store bytes fetched from elsewhere (the remote tier) as the object `expected`, only when
    /// their blake3 digest is `expected`: `Ok(false)` (nothing written) when it is not.
    ///
    /// # Errors
    /// Filesystem errors.
    pub fn import_object(&self, expected: &Digest, bytes: &[u8]) -> Result<bool, CacheError> {
        if Digest::of_bytes(bytes) != *expected {
            return Ok(false);
        }
        let dest = self.object_path(expected);
        if !fs::metadata(&dest).is_ok_and(|m| m.len() == bytes.len() as u64) {
            atomic_write(&dest, bytes).map_err(io_err("writing", &dest))?;
        }
        Ok(true)
    }

    /// Write a record fetched from elsewhere (the remote tier), after the checks a local record
    /// gets (its key is `key`, its output digest matches its outputs, safe output names) and
    /// with every output object present here at its recorded size (as a hit is checked; the
    /// objects' content was checked by [`Cache::import_object`] or is the cache's own);
    /// written atomically, last.
    ///
    /// # Errors
    /// What failed its check (nothing is written), filesystem errors.
    pub fn import_record(&self, key: &Digest, record: &Record) -> Result<(), CacheError> {
        let path = self.record_path(key);
        crate::safety::validate_record(record, &path)?;
        for (name, out) in &record.outputs {
            if !self.has_object(&out.digest, out.size)? {
                return Err(CacheError::Malformed {
                    what: "record",
                    path,
                    message: format!("its output `{name}` is not in the cache"),
                });
            }
        }
        let bytes = serde_json::to_vec_pretty(record).map_err(|e| CacheError::Malformed {
            what: "record",
            path: path.clone(),
            message: e.to_string(),
        })?;
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
        }
        atomic_write(&path, &bytes).map_err(io_err("writing", &path))?;
        Ok(())
    }

    /// Whether the object is here, a regular file of `size` bytes.
    ///
    /// # Errors
    /// An unsafe path inside the cache.
    pub fn has_object(&self, d: &Digest, size: u64) -> Result<bool, CacheError> {
        Ok(self
            .object_file(d)?
            .is_some_and(|p| fs::metadata(p).is_ok_and(|m| m.len() == size)))
    }

    /// Read an object's bytes.
    ///
    /// # Errors
    /// When it is missing.
    pub fn read_object(&self, d: &Digest) -> Result<Vec<u8>, CacheError> {
        let p = self.object_path(d);
        match self.object_file(d)? {
            Some(p) => fs::read(&p).map_err(io_err("reading", &p)),
            None => Err(io_err("reading", &p)(std::io::ErrorKind::NotFound.into())),
        }
    }

    /// Publish a staging area as the result of `key`.
    ///
    /// Objects are moved in first, the record is written last (atomically): a crash at any
    /// point leaves either no record (the key is a miss) or a complete one.
    ///
    /// # Errors
    /// Filesystem errors, or an output that is not a regular file.
    #[allow(clippy::too_many_arguments)]
    pub fn publish(
        &self,
        staging: Staging,
        key: Digest,
        kind: &str,
        kind_version: u32,
        params: serde_json::Value,
        inputs: BTreeMap<String, InputRef>,
        files: BTreeMap<String, FileRef>,
        meta: RunMeta,
    ) -> Result<Record, CacheError> {
        let mut names = Vec::new();
        collect_files(staging.out_dir(), staging.out_dir(), &mut names)?;
        let mut outputs = BTreeMap::new();
        for (i, (name, path)) in names.iter().enumerate() {
            let r = self.put_object(path)?;
            outputs.insert(name.clone(), r);
            if i == 0 {
                crash_point("publish-first-object");
            }
        }
        crash_point("publish-before-record");
        let record = Record {
            format: RECORD_FORMAT,
            key,
            kind: kind.to_string(),
            kind_version,
            params,
            inputs,
            files,
            output_digest: combined_digest(&outputs),
            outputs,
            meta,
        };
        let p = self.record_path(&key);
        let bytes = serde_json::to_vec_pretty(&record).map_err(|e| CacheError::Malformed {
            what: "record",
            path: p.clone(),
            message: e.to_string(),
        })?;
        atomic_write(&p, &bytes).map_err(io_err("writing", &p))?;
        crash_point("publish-after-record");
        let _ = fs::remove_file(self.failure_path(&key));
        let _ = fs::remove_dir_all(self.work_dir(&key));
        drop(staging);
        Ok(record)
    }

    /// Read the record of a key without checking its objects.
    ///
    /// # Errors
    /// When the record exists but cannot be read or parsed.
    pub fn record(&self, key: &Digest) -> Result<Option<Record>, CacheError> {
        read_record(&self.record_path(key))
    }

    /// Look a key up and check that its outputs exist with the right sizes; objects modified
    /// or changed (mtime or ctime: an in-place rewrite with the mtime set back still moves the
    /// ctime) after the record was written are rehashed. Damaged objects are moved to
    /// quarantine, except in a [`Cache::read_only`] view.
    ///
    /// # Errors
    /// When the record is unreadable.
    pub fn check(&self, key: &Digest) -> Result<HitCheck, CacheError> {
        let rp = self.record_path(key);
        let record: Record = match read_record(&rp) {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(HitCheck::Miss),
            // A record that does not parse is treated as absent: the node reruns and replaces it.
            Err(CacheError::Malformed { .. }) => return Ok(HitCheck::Miss),
            Err(e) => return Err(e),
        };
        let rec_time = fs::metadata(&rp).ok().map(|m| changed_ns(&m));
        let mut problems = Vec::new();
        for (name, o) in &record.outputs {
            // Never through a symlink: a planted link or special file is damage, not data.
            let p = match self.object_file(&o.digest) {
                Ok(Some(p)) => p,
                Ok(None) => {
                    problems.push((name.clone(), "object missing".to_string()));
                    continue;
                }
                Err(e) => {
                    problems.push((name.clone(), e.to_string()));
                    continue;
                }
            };
            match fs::metadata(&p) {
                Err(_) => problems.push((name.clone(), "object missing".to_string())),
                Ok(m) if m.len() != o.size => {
                    problems.push((
                        name.clone(),
                        format!("size {} instead of {}", m.len(), o.size),
                    ));
                    if !self.read_only {
                        self.quarantine(&o.digest);
                    }
                }
                Ok(m) => {
                    let touched = match rec_time {
                        Some(rt) => changed_ns(&m) > rt,
                        None => true,
                    };
                    if touched && Digest::of_file(&p).ok() != Some(o.digest) {
                        problems.push((name.clone(), "content does not match its digest".into()));
                        if !self.read_only {
                            self.quarantine(&o.digest);
                        }
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(HitCheck::Hit(record))
        } else {
            Ok(HitCheck::Damaged { record, problems })
        }
    }

    /// Move a damaged object out of `objects/` (only a regular file at its own path, into a
    /// real `quarantine/` directory: nothing is moved through a symlink).
    pub(crate) fn quarantine(&self, d: &Digest) {
        let Ok(Some(src)) = self.object_file(d) else {
            return;
        };
        let dir = self.root.join("quarantine");
        if !dir.exists() {
            let _ = fs::create_dir(&dir);
        }
        if crate::safety::real_dir(&dir) {
            let _ = fs::rename(&src, dir.join(unique_name(&format!("{}-", d.short()))));
        }
    }

    /// Record a failed run of `key` (replacing an earlier failure).
    ///
    /// # Errors
    /// Filesystem errors.
    pub fn put_failure(&self, failure: &Failure) -> Result<(), CacheError> {
        let p = self.failure_path(&failure.key);
        let bytes = serde_json::to_vec_pretty(failure).unwrap_or_default();
        atomic_write(&p, &bytes).map_err(io_err("writing", &p))
    }

    /// The last failure of a key, if any.
    ///
    /// # Errors
    /// When the file exists but is unreadable.
    pub fn failure(&self, key: &Digest) -> Result<Option<Failure>, CacheError> {
        read_json(&self.failure_path(key), "failure")
    }

    /// Write an auxiliary file (e.g. a task description for a batch job) at `dir/name` inside
    /// the cache, atomically. Returns its path.
    ///
    /// # Errors
    /// Filesystem errors.
    pub fn write_aux(&self, dir: &str, name: &str, bytes: &[u8]) -> Result<PathBuf, CacheError> {
        let p = self.root.join(dir).join(name);
        atomic_write(&p, bytes).map_err(io_err("writing", &p))?;
        Ok(p)
    }

    /// Read an auxiliary file written by [`Cache::write_aux`].
    ///
    /// # Errors
    /// Filesystem errors other than absence.
    pub fn read_aux(&self, dir: &str, name: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let p = self.root.join(dir).join(name);
        match fs::read(&p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("reading", &p)(e)),
        }
    }

    fn ref_path(&self, experiment: &str, instance: &str) -> PathBuf {
        let exp: String = experiment
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let h = Digest::of_bytes(instance.as_bytes()).to_hex();
        self.root
            .join("refs")
            .join(exp)
            .join(format!("{}.json", &h[..32]))
    }

    /// Remember `key` as the latest result of a node instance of an experiment.
    ///
    /// # Errors
    /// Filesystem errors.
    pub fn set_ref(
        &self,
        experiment: &str,
        instance: &str,
        key: &Digest,
    ) -> Result<(), CacheError> {
        let p = self.ref_path(experiment, instance);
        if read_json::<RefFile>(&p, "ref")
            .ok()
            .flatten()
            .is_some_and(|r| r.key == *key)
        {
            return Ok(());
        }
        let body = RefFile {
            instance: instance.to_string(),
            key: *key,
        };
        atomic_write(&p, &serde_json::to_vec(&body).unwrap_or_default())
            .map_err(io_err("writing", &p))
    }

    /// The latest key of a node instance, if one was ever computed.
    pub fn get_ref(&self, experiment: &str, instance: &str) -> Option<Digest> {
        read_json::<RefFile>(&self.ref_path(experiment, instance), "ref")
            .ok()
            .flatten()
            .map(|r| r.key)
    }

    /// All (experiment, instance, key) refs.
    pub fn refs(&self) -> Vec<(String, String, Digest)> {
        let mut out = Vec::new();
        let Ok(exps) = fs::read_dir(self.root.join("refs")) else {
            return out;
        };
        for e in exps.flatten() {
            let exp = e.file_name().to_string_lossy().to_string();
            let Ok(files) = fs::read_dir(e.path()) else {
                continue;
            };
            for f in files.flatten() {
                if let Ok(Some(r)) = read_json::<RefFile>(&f.path(), "ref") {
                    out.push((exp.clone(), r.instance, r.key));
                }
            }
        }
        out.sort();
        out
    }
}

fn collect_files(
    base: &Path,
    dir: &Path,
    out: &mut Vec<(String, PathBuf)>,
) -> Result<(), CacheError> {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map_err(io_err("listing", dir))?
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let ft = e.file_type().map_err(io_err("reading", &p))?;
        let rel = p
            .strip_prefix(base)
            .unwrap_or(&p)
            .to_string_lossy()
            .replace('\\', "/");
        if ft.is_dir() {
            collect_files(base, &p, out)?;
        } else if ft.is_file() {
            out.push((rel, p));
        } else {
            return Err(CacheError::BadOutput {
                name: rel,
                message: "not a regular file (links are not stored)".into(),
            });
        }
    }
    Ok(())
}

/// A record file, validated ([`crate::safety::validate_record`]): a record that fails is
/// malformed and never acted on.
pub(crate) fn read_record(p: &Path) -> Result<Option<Record>, CacheError> {
    let r: Option<Record> = read_json(p, "record")?;
    if let Some(r) = &r {
        crate::safety::validate_record(r, p)?;
    }
    Ok(r)
}

/// Largest JSON state file read (records, failures, memos, refs): 64 MiB.
const MAX_JSON_BYTES: u64 = 64 << 20;

pub(crate) fn read_json<T: for<'de> Deserialize<'de>>(
    p: &Path,
    what: &'static str,
) -> Result<Option<T>, CacheError> {
    // Regular files only (a FIFO planted in the tree would block the read), and capped.
    match fs::symlink_metadata(p) {
        Ok(m) if !m.file_type().is_file() => {
            return Err(CacheError::Malformed {
                what,
                path: p.to_path_buf(),
                message: "not a regular file (symlinks are not followed in the cache)".into(),
            });
        }
        Ok(m) if m.len() > MAX_JSON_BYTES => {
            return Err(CacheError::Malformed {
                what,
                path: p.to_path_buf(),
                message: format!(
                    "{} bytes; state files are at most {MAX_JSON_BYTES}",
                    m.len()
                ),
            });
        }
        _ => {}
    }
    match fs::read(p) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| CacheError::Malformed {
                what,
                path: p.to_path_buf(),
                message: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("reading", p)(e)),
    }
}

/// The later of a file's mtime and ctime, in nanoseconds since the epoch.
fn changed_ns(m: &fs::Metadata) -> i128 {
    use std::os::unix::fs::MetadataExt;
    let t = |s: i64, ns: i64| i128::from(s) * 1_000_000_000 + i128::from(ns);
    t(m.mtime(), m.mtime_nsec()).max(t(m.ctime(), m.ctime_nsec()))
}
