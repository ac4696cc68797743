//! cedm-cache: the content-addressed artifact store.
//!
//! Knows digests, bytes, records and locks, and nothing about experiments or models. Layout of a
//! cache directory (every write is a temp file + fsync + atomic rename):
//!
//! ```text
//! objects/ab/<digest>        output files by blake3 of their content, read-only
//! records/ab/<key>.json      a node result: key -> outputs + provenance (the commit point)
//! failures/ab/<key>.json     the last failure of a key, for `cedm cache show` (never a hit)
//! refs/<experiment>/<h>.json the last key of each node instance, to explain why a node reruns
//! locks/<key>.lock           lock files (host + pid + heartbeat; no flock)
//! tmp/<unique>/              staging areas of running nodes
//! work/<key>/                persistent scratch of a node (checkpoints), removed once published
//! state/files/<h>.json       remembered digests of big input files by (path, size, mtime, inode)
//! quarantine/                objects found corrupt, moved aside
//! ```

#![forbid(unsafe_code)]

mod digest;
mod files;
mod fsutil;
mod inspect;
mod lock;
mod record;
pub mod safety;
mod store;
mod trajectory;

use std::path::{Path, PathBuf};

pub use digest::{BadDigest, Digest};
pub use files::describe_file_type;
pub use fsutil::{crash_point, hostname, rfc3339_now};
pub use inspect::{GcReport, VerifyProblem, VerifyReport};
pub use lock::{LockGuard, LockOwner, LockPolicy, LockState};
pub use record::{
    Failure, FileRef, InputRef, OutputRef, RECORD_FORMAT, Record, RunMeta, combined_digest,
};
pub use store::{HitCheck, Staging};
pub use trajectory::SnapshotEntry;

/// Errors of the artifact store. Each names the path it was working on.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What we were doing (`reading`, `writing`, `renaming`, …).
        op: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A record or state file could not be parsed.
    #[error("malformed {what} {path}: {message}")]
    Malformed {
        /// `record`, `failure`, `ref`, …
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Parser message.
        message: String,
    },
    /// The remote cache tier failed.
    #[error("remote cache {url}: {message}")]
    Remote {
        /// The remote's URL.
        url: String,
        /// What failed.
        message: String,
    },
    /// The directory is not a cedm cache, or one of a newer format.
    #[error("{path} is not a usable cedm cache: {message}")]
    NotACache {
        /// The directory.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A key or key prefix matched nothing, or several records.
    #[error("{0}")]
    Lookup(String),
    /// A node's staged output is not a plain file or has an unusable name.
    #[error("output `{name}`: {message}")]
    BadOutput {
        /// The output's name.
        name: String,
        /// Why it is unusable.
        message: String,
    },
}

pub(crate) fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CacheError {
    let path = path.to_path_buf();
    move |source| CacheError::Io { op, path, source }
}

/// Layout version of the cache directory.
pub const CACHE_FORMAT: u32 = 1;

/// An open cache directory.
#[derive(Clone, Debug)]
pub struct Cache {
    root: PathBuf,
    lock_policy: LockPolicy,
    /// A view for commands that only look ([`Cache::read_only`]): damaged objects are reported,
    /// not quarantined, and no memo is written.
    read_only: bool,
}

impl Cache {
    /// Open (creating if needed) the cache at `root`.
    ///
    /// # Errors
    /// When the directory cannot be created, or holds a cache of a newer format.
    pub fn open(root: impl AsRef<Path>) -> Result<Cache, CacheError> {
        let root = root.as_ref().to_path_buf();
        std::fs::create_dir_all(&root).map_err(io_err("creating", &root))?;
        let root = root.canonicalize().map_err(io_err("resolving", &root))?;
        let marker = root.join("cedm-cache.json");
        match std::fs::read(&marker) {
            Ok(bytes) => {
                let v: serde_json::Value =
                    serde_json::from_slice(&bytes).map_err(|e| CacheError::NotACache {
                        path: root.clone(),
                        message: format!("cedm-cache.json is unreadable: {e}"),
                    })?;
                let fmt = v.get("format").and_then(|f| f.as_u64()).unwrap_or(0);
                if fmt > u64::from(CACHE_FORMAT) {
                    return Err(CacheError::NotACache {
                        path: root,
                        message: format!(
                            "format {fmt} is newer than this cedm understands ({CACHE_FORMAT}); upgrade cedm"
                        ),
                    });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let body = serde_json::json!({ "format": CACHE_FORMAT, "created_by": "cedm" });
                fsutil::atomic_write(&marker, body.to_string().as_bytes())
                    .map_err(io_err("writing", &marker))?;
                // Backup tools skip directories tagged like this (https://bford.info/cachedir/).
                let tag = root.join("CACHEDIR.TAG");
                let _ = std::fs::write(
                    &tag,
                    "Signature: 8a477f597d28d172789f06886806bc55\n# cedm artifact cache\n",
                );
            }
            Err(e) => return Err(io_err("reading", &marker)(e)),
        }
        Ok(Cache {
            root,
            lock_policy: LockPolicy::default(),
            read_only: false,
        })
    }

    /// Open the cache at `root` for looking only, creating nothing: a [`Cache::read_only`] view,
    /// and `None` when there is no cache there (a missing directory, or one without the
    /// cache's `cedm-cache.json`).
    ///
    /// # Errors
    /// When `root` is not a directory, or holds a cache of a newer format.
    pub fn open_existing(root: impl AsRef<Path>) -> Result<Option<Cache>, CacheError> {
        let root = root.as_ref();
        match std::fs::metadata(root) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("reading", root)(e)),
            Ok(m) if !m.is_dir() => {
                return Err(CacheError::NotACache {
                    path: root.to_path_buf(),
                    message: "not a directory".into(),
                });
            }
            Ok(_) => {}
        }
        if !root.join("cedm-cache.json").is_file() {
            // A run killed between creating the directory and writing its marker leaves a
            // cache directory without one: empty, holding only the cache's own layout, or the
            // marker's temporary file.
            // That is a cache (with nothing in it yet), not a foreign directory.
            const LAYOUT: &[&str] = &[
                "objects",
                "records",
                "failures",
                "refs",
                "locks",
                "tmp",
                "work",
                "trajectories",
                "state",
                "tasks",
                "quarantine",
                "CACHEDIR.TAG",
            ];
            let ours = std::fs::read_dir(root).is_ok_and(|entries| {
                entries.flatten().all(|e| {
                    let n = e.file_name();
                    let n = n.to_string_lossy();
                    // `.tmp-…`: the marker's own atomic write, cut short.
                    LAYOUT.contains(&n.as_ref()) || n.starts_with(".tmp-")
                })
            });
            if !ours {
                return Ok(None);
            }
            return Ok(Some(Cache::absent(root)));
        }
        // The marker exists, so `open` validates it and writes nothing.
        Cache::open(root).map(|c| Some(c.read_only()))
    }

    /// A read-only view of a cache that does not exist yet at `root` (what [`Cache::open_existing`]
    /// found none at): every lookup misses, nothing is created. `cedm status` of an experiment
    /// never run.
    pub fn absent(root: impl AsRef<Path>) -> Cache {
        Cache {
            root: root.as_ref().to_path_buf(),
            lock_policy: LockPolicy::default(),
            read_only: true,
        }
    }

    /// A view of this cache for commands that only look (`cedm status`, `run --dry-run`,
    /// reports): [`Cache::check`] reports damaged objects instead of moving them to
    /// quarantine, and file digests are not memoised. Repair is left to `run` and `verify`.
    pub fn read_only(&self) -> Cache {
        Cache {
            read_only: true,
            ..self.clone()
        }
    }

    /// Whether this is a [`Cache::read_only`] view.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Use a different lock timing policy (tests, slow shared filesystems).
    pub fn with_lock_policy(mut self, policy: LockPolicy) -> Cache {
        self.lock_policy = policy;
        self
    }

    /// The cache directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn sharded(&self, dir: &str, d: &Digest, ext: &str) -> PathBuf {
        let hex = d.to_hex();
        self.root
            .join(dir)
            .join(&hex[..2])
            .join(format!("{hex}{ext}"))
    }

    /// Path of the object with this content digest.
    pub fn object_path(&self, d: &Digest) -> PathBuf {
        self.sharded("objects", d, "")
    }

    /// The object's path when it is safe to open: real directories below the cache root and a
    /// regular file (no symlink anywhere); `Ok(None)` when it does not exist.
    ///
    /// # Errors
    /// A symlink or a special file on the way ([`safety::object_file`]).
    pub fn object_file(&self, d: &Digest) -> Result<Option<PathBuf>, CacheError> {
        let hex = d.to_hex();
        safety::object_file(&self.root, &Path::new("objects").join(&hex[..2]).join(&hex))
    }

    /// Path of the record of this key.
    pub fn record_path(&self, key: &Digest) -> PathBuf {
        self.sharded("records", key, ".json")
    }

    fn failure_path(&self, key: &Digest) -> PathBuf {
        self.sharded("failures", key, ".json")
    }

    /// Persistent scratch directory of a key (checkpoints survive a crash here).
    pub fn work_dir(&self, key: &Digest) -> PathBuf {
        self.root.join("work").join(key.to_hex())
    }

    /// Lock file of a key.
    pub fn lock_path(&self, key: &Digest) -> PathBuf {
        self.root
            .join("locks")
            .join(format!("{}.lock", key.to_hex()))
    }

    /// Try once to lock a key for computing it.
    ///
    /// # Errors
    /// Filesystem errors.
    pub fn try_lock(
        &self,
        key: &Digest,
        purpose: &str,
    ) -> Result<Result<LockGuard, LockOwner>, CacheError> {
        let p = self.lock_path(key);
        lock::try_lock(&p, purpose, &self.lock_policy).map_err(io_err("locking", &p))
    }

    /// Lock any named resource inside the cache (e.g. a GPU token shared by several runs).
    ///
    /// # Errors
    /// Filesystem errors.
    pub fn try_lock_named(
        &self,
        name: &str,
        purpose: &str,
    ) -> Result<Result<LockGuard, LockOwner>, CacheError> {
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let p = self.root.join("locks").join(format!("{safe}.lock"));
        lock::try_lock(&p, purpose, &self.lock_policy).map_err(io_err("locking", &p))
    }

    /// Who holds the lock of a key, if anyone live does.
    pub fn lock_state(&self, key: &Digest) -> LockState {
        lock::lock_state(&self.lock_path(key), &self.lock_policy)
    }
}
