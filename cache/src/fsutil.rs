//! Small filesystem helpers: durable atomic writes, the host name, process liveness.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// fsync a directory so that a rename inside it survives a power cut.
pub(crate) fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    // Opening a directory read-only and calling fsync is what POSIX offers; on filesystems that
    // refuse it (some FUSE mounts) the rename is still atomic, only less durable.
    match File::open(dir) {
        Ok(f) => match f.sync_all() {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => Ok(()),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// A name no other process on any host will pick: host, pid, time, counter.
pub(crate) fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}{}-{}-{nanos:x}-{n}",
        hostname(),
        std::process::id()
    )
}

/// Write `bytes` to `path` atomically: temp file in the same directory, fsync, rename, fsync dir.
pub(crate) fn atomic_write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let tmp = dir.join(unique_name(".tmp-"));
    let written =
        File::create(&tmp).and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()));
    if let Err(e) = written {
        // Disk full: no half-written temp file stays behind.
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fsync_dir(dir)
}

/// This machine's host name (for lock files and records).
pub fn hostname() -> String {
    if let Ok(h) = fs::read_to_string("/proc/sys/kernel/hostname") {
        let h = h.trim();
        if !h.is_empty() {
            return h.to_string();
        }
    }
    match rustix::system::uname().nodename().to_str() {
        Ok(s) if !s.is_empty() => s.to_string(),
        _ => "unknown-host".to_string(),
    }
}

/// Start time of a process in clock ticks since boot (Linux), to tell a live pid from a reused one.
pub(crate) fn process_start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: parse after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    // Fields after the name start at field 3; starttime is field 22.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process `pid` (with this start time, when known) is alive on this host.
pub(crate) fn process_alive(pid: u32, start_time: Option<u64>) -> bool {
    // Signal 0 only checks for existence and permission (EPERM: it exists, owned by another user).
    let Some(p) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    match rustix::process::test_kill_process(p) {
        Ok(()) => {}
        Err(e) if e == rustix::io::Errno::PERM => {}
        Err(_) => return false,
    }
    match (start_time, process_start_time(pid)) {
        (Some(want), Some(have)) => want == have,
        _ => true,
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// RFC 3339 timestamp (UTC, seconds).
pub fn rfc3339_now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// Test hook for crash-safety tests: when `CEDM_TEST_CRASH` names this point, the process dies
/// at once (no destructors, no cleanup), as under `kill -9`.
///
/// The variable holds `point` or `point:N` (die at the N-th time the point is reached, from 1).
pub fn crash_point(point: &str) {
    static HITS: AtomicU64 = AtomicU64::new(0);
    let Ok(spec) = std::env::var("CEDM_TEST_CRASH") else {
        return;
    };
    let (name, nth) = match spec.split_once(':') {
        Some((n, k)) => (n, k.parse::<u64>().unwrap_or(1)),
        None => (spec.as_str(), 1),
    };
    if name == point && HITS.fetch_add(1, Ordering::SeqCst) + 1 == nth {
        // SIGKILL to ourselves: nothing after this runs.
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        std::process::abort();
    }
}
