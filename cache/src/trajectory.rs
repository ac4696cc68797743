//! Trajectories: one computation's results at several lengths (a training's snapshots), indexed
//! so that a longer run can resume from the longest one cached.
//!
//! `trajectories/<trajectory>/<key>.json` holds `{length, key}` for each published snapshot of
//! the trajectory — one small file per entry, written atomically, so concurrent publishers
//! never lose each other's entries. The index is a hint: every lookup checks the record it names
//! (a removed or damaged record is skipped), and `gc` drops entries whose record is gone.

use std::fs;

use serde::{Deserialize, Serialize};

use crate::fsutil::atomic_write;
use crate::store::read_json;
use crate::{Cache, CacheError, Digest, io_err};

/// One snapshot of a trajectory.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotEntry {
    /// How far the computation had gone (the kind's length param, e.g. kimg).
    pub length: f64,
    /// The key its result is published under.
    pub key: Digest,
}

impl Cache {
    fn trajectory_dir(&self, trajectory: &Digest) -> std::path::PathBuf {
        self.root.join("trajectories").join(trajectory.to_hex())
    }

    /// Index `key` as the snapshot of `trajectory` at `length`.
    ///
    /// # Errors
    /// Filesystem errors. A read-only view writes nothing.
    pub fn add_snapshot(
        &self,
        trajectory: &Digest,
        length: f64,
        key: &Digest,
    ) -> Result<(), CacheError> {
        if self.read_only {
            return Ok(());
        }
        let p = self.trajectory_dir(trajectory).join(format!("{key}.json"));
        let bytes = serde_json::to_vec(&SnapshotEntry { length, key: *key }).unwrap_or_default();
        atomic_write(&p, &bytes).map_err(io_err("writing", &p))
    }

    /// The indexed snapshots of `trajectory`, by increasing length (unreadable entries skipped;
    /// the records they name are not checked here).
    pub fn snapshots(&self, trajectory: &Digest) -> Vec<SnapshotEntry> {
        let dir = self.trajectory_dir(trajectory);
        // A real directory only: symlinks are not followed in the cache.
        if !fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
            return Vec::new();
        }
        let mut out: Vec<SnapshotEntry> = fs::read_dir(&dir)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| read_json::<SnapshotEntry>(&e.path(), "snapshot entry").ok())
                    .flatten()
                    .filter(|s| s.length.is_finite())
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by(|a, b| a.length.total_cmp(&b.length).then(a.key.0.cmp(&b.key.0)));
        out
    }

    /// Remove index entries whose record no longer exists; returns how many.
    pub(crate) fn prune_snapshots(&self, dry_run: bool) -> usize {
        let root = self.root.join("trajectories");
        let mut n = 0;
        let Ok(rd) = fs::read_dir(&root) else {
            return 0;
        };
        for t in rd.flatten() {
            if !t.file_type().is_ok_and(|f| f.is_dir()) {
                continue;
            }
            for e in fs::read_dir(t.path()).into_iter().flatten().flatten() {
                let gone = match read_json::<SnapshotEntry>(&e.path(), "snapshot entry") {
                    Ok(Some(s)) => {
                        !fs::symlink_metadata(self.record_path(&s.key)).is_ok_and(|m| m.is_file())
                    }
                    _ => true,
                };
                if gone {
                    n += 1;
                    if !dry_run {
                        let _ = fs::remove_file(e.path());
                    }
                }
            }
            if !dry_run {
                let _ = fs::remove_dir(t.path()); // only when empty
            }
        }
        n
    }
}
