//! Lock files that work on NFS, Lustre and GPFS.
//!
//! No `flock`/`fcntl` (unreliable or absent on network filesystems) and no database. A lock is a
//! file created with `O_CREAT | O_EXCL` (atomic on NFSv3+ and every cluster filesystem we know)
//! holding the owner's host, pid, process start time and a nonce. The holder touches the file
//! every few seconds (a heartbeat). A lock is stale when
//! - its owner is on this host and that process is gone (pid dead, or reused: start time differs), or
//! - its heartbeat is older than `stale_after` (owner on another host, crashed or partitioned).
//!
//! A stale lock is broken by renaming it to a unique name (atomic: of two breakers only one
//! succeeds) and checking that the renamed file is the one judged stale.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::fsutil::{hostname, process_alive, process_start_time, unique_name, unix_now};

/// Who holds a lock; the content of a lock file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LockOwner {
    /// Host name of the holder.
    pub host: String,
    /// Process id on that host.
    pub pid: u32,
    /// Process start time (clock ticks since boot), to detect pid reuse.
    pub start_time: Option<u64>,
    /// Random per-lock value, to tell two locks by the same process apart.
    pub nonce: String,
    /// Seconds since the epoch when the lock was taken.
    pub created: f64,
    /// What the lock is for (a node instance label), for humans.
    #[serde(default)]
    pub purpose: String,
}

/// Timing policy of locks.
#[derive(Clone, Copy, Debug)]
pub struct LockPolicy {
    /// How often the holder refreshes the lock file's mtime.
    pub heartbeat: Duration,
    /// A lock whose mtime is older than this is stale whoever holds it.
    pub stale_after: Duration,
}

impl Default for LockPolicy {
    fn default() -> Self {
        LockPolicy {
            heartbeat: Duration::from_secs(10),
            stale_after: Duration::from_secs(90),
        }
    }
}

/// The state of a lock file as seen by someone who wants it.
#[derive(Debug)]
pub enum LockState {
    /// Nobody holds it.
    Free,
    /// Held by a live owner.
    Held(LockOwner),
    /// Held by a dead owner (or unreadable and old).
    Stale(Option<LockOwner>),
}

/// A held lock; released (file removed) on drop. The heartbeat thread runs while it lives.
#[derive(Debug)]
pub struct LockGuard {
    path: PathBuf,
    owner: LockOwner,
    stop: Arc<AtomicBool>,
    heartbeat: Option<JoinHandle<()>>,
}

impl LockGuard {
    /// Path of the lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.heartbeat.take() {
            h.thread().unpark();
            let _ = h.join();
        }
        // Remove only our own lock: if it was broken as stale and retaken, leave the new one.
        if read_owner(&self.path).is_some_and(|o| o.nonce == self.owner.nonce) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn read_owner(path: &Path) -> Option<LockOwner> {
    let bytes = fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Inspect a lock file.
pub fn lock_state(path: &Path, policy: &LockPolicy) -> LockState {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(_) => return LockState::Free,
    };
    let age = meta
        .modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .unwrap_or(Duration::ZERO);
    let owner = read_owner(path);
    match owner {
        Some(o) => {
            if o.host == hostname() && !process_alive(o.pid, o.start_time) {
                LockState::Stale(Some(o))
            } else if age > policy.stale_after {
                LockState::Stale(Some(o))
            } else {
                LockState::Held(o)
            }
        }
        // A lock file is written in one small write right after creation; an unreadable one that
        // is a few seconds old belongs to a process killed in between.
        None if age > Duration::from_secs(5) => LockState::Stale(None),
        None => LockState::Held(LockOwner {
            host: "?".into(),
            pid: 0,
            start_time: None,
            nonce: String::new(),
            created: 0.0,
            purpose: "(being written)".into(),
        }),
    }
}

/// Try once to take the lock at `path`. `Ok(None)` when a live owner holds it.
///
/// # Errors
/// Filesystem errors other than "already exists".
pub fn try_lock(
    path: &Path,
    purpose: &str,
    policy: &LockPolicy,
) -> std::io::Result<Result<LockGuard, LockOwner>> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    for _attempt in 0..4 {
        match OpenOptions::new().write(true).create_new(true).open(path) {
            Ok(mut f) => {
                let owner = LockOwner {
                    host: hostname(),
                    pid: std::process::id(),
                    start_time: process_start_time(std::process::id()),
                    nonce: unique_name(""),
                    created: unix_now(),
                    purpose: purpose.to_string(),
                };
                let bytes = serde_json::to_vec(&owner).map_err(std::io::Error::other)?;
                // A lock that could not be written (disk full) is removed: an empty lock file
                // left behind would make the next run wait for its stale timeout.
                if let Err(e) = f.write_all(&bytes).and_then(|()| f.sync_all()) {
                    drop(f);
                    let _ = fs::remove_file(path);
                    return Err(e);
                }
                return Ok(Ok(start_heartbeat(path.to_path_buf(), owner, *policy)));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                match lock_state(path, policy) {
                    LockState::Free => continue,
                    LockState::Held(o) => return Ok(Err(o)),
                    LockState::Stale(seen) => {
                        break_stale(path, seen.as_ref())?;
                        continue;
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
    // Lost every race: report whoever holds it now.
    Ok(Err(read_owner(path).unwrap_or(LockOwner {
        host: "?".into(),
        pid: 0,
        start_time: None,
        nonce: String::new(),
        created: 0.0,
        purpose: "(contended)".into(),
    })))
}

fn break_stale(path: &Path, seen: Option<&LockOwner>) -> std::io::Result<()> {
    let aside = path.with_extension(unique_name("stale-"));
    match fs::rename(path, &aside) {
        Ok(()) => {
            let moved = read_owner(&aside);
            let same = match (seen, &moved) {
                (Some(a), Some(b)) => a.nonce == b.nonce,
                (None, None) => true,
                _ => false,
            };
            if !same {
                // Someone retook the lock between our look and our rename: put theirs back.
                // hard_link fails if a third process already created a new lock; then theirs wins
                // and the one we moved loses its lock, which its owner detects on release.
                let _ = fs::hard_link(&aside, path);
            }
            let _ = fs::remove_file(&aside);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn start_heartbeat(path: PathBuf, owner: LockOwner, policy: LockPolicy) -> LockGuard {
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let path2 = path.clone();
    let handle = std::thread::Builder::new()
        .name("cedm-lock-heartbeat".into())
        .spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                std::thread::park_timeout(policy.heartbeat);
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(f) = File::options().write(true).open(&path2) {
                    let _ = f.set_modified(SystemTime::now());
                }
            }
        })
        .ok();
    LockGuard {
        path,
        owner,
        stop,
        heartbeat: handle,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_then_released() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.lock");
        let pol = LockPolicy::default();
        let g = try_lock(&p, "x", &pol).unwrap().unwrap();
        let other = try_lock(&p, "y", &pol).unwrap();
        assert!(other.is_err(), "second lock must fail while held");
        drop(g);
        assert!(!p.exists());
        assert!(try_lock(&p, "z", &pol).unwrap().is_ok());
    }

    #[test]
    fn dead_owner_on_this_host_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.lock");
        // A pid that cannot be alive (above pid_max on Linux).
        let dead = LockOwner {
            host: hostname(),
            pid: 4_194_305,
            start_time: Some(1),
            nonce: "n".into(),
            created: 0.0,
            purpose: String::new(),
        };
        fs::write(&p, serde_json::to_vec(&dead).unwrap()).unwrap();
        assert!(matches!(
            lock_state(&p, &LockPolicy::default()),
            LockState::Stale(_)
        ));
        let g = try_lock(&p, "me", &LockPolicy::default()).unwrap();
        assert!(g.is_ok(), "a dead owner's lock is taken over");
    }

    #[test]
    fn other_host_is_stale_only_after_heartbeat_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.lock");
        let remote = LockOwner {
            host: "some-other-node".into(),
            pid: 1,
            start_time: None,
            nonce: "r".into(),
            created: 0.0,
            purpose: String::new(),
        };
        fs::write(&p, serde_json::to_vec(&remote).unwrap()).unwrap();
        let pol = LockPolicy {
            heartbeat: Duration::from_millis(10),
            stale_after: Duration::from_secs(3600),
        };
        assert!(matches!(lock_state(&p, &pol), LockState::Held(_)));
        let old = SystemTime::now() - Duration::from_secs(7200);
        File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(matches!(lock_state(&p, &pol), LockState::Stale(_)));
    }

    #[test]
    fn heartbeat_refreshes_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.lock");
        let pol = LockPolicy {
            heartbeat: Duration::from_millis(20),
            stale_after: Duration::from_secs(1),
        };
        let _g = try_lock(&p, "hb", &pol).unwrap().unwrap();
        let old = SystemTime::now() - Duration::from_secs(100);
        File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(old)
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert!(matches!(lock_state(&p, &pol), LockState::Held(_)));
    }
}
