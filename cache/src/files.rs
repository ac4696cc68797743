//! Digests of input files outside the cache (datasets, weights), remembered by
//! (path, size, mtime, ctime, inode, device) so that a no-op run never rehashes gigabytes. The
//! ctime is part of the stamp because a file rewritten in place with its mtime set back (`touch
//! -d`, `cp -p`, some sync tools) keeps its mtime but always gets a new ctime.
//!
//! Only regular files and directories are hashed: a FIFO, a socket or a device is refused
//! before it is opened (reading one would block forever or read a whole disk), and a directory
//! walk never enters a directory twice (symlink loops).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsutil::atomic_write;
use crate::store::read_json;
use crate::{Cache, CacheError, Digest, FileRef, io_err};

#[derive(Serialize, Deserialize, PartialEq)]
struct Stamp {
    path: String,
    size: u64,
    mtime_ns: i128,
    /// Absent in memos of older versions (they never match: the file is rehashed once).
    #[serde(default)]
    ctime_ns: i128,
    inode: u64,
    dev: u64,
}

#[derive(Serialize, Deserialize)]
struct Memo {
    stamp: Stamp,
    digest: Digest,
}

fn stamp(path: &Path, m: &fs::Metadata) -> Stamp {
    Stamp {
        path: path.to_string_lossy().to_string(),
        size: m.len(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        inode: m.ino(),
        dev: m.dev(),
    }
}

impl Cache {
    fn memo_path(&self, path: &Path) -> PathBuf {
        let h = Digest::of_bytes(path.to_string_lossy().as_bytes()).to_hex();
        self.root
            .join("state")
            .join("files")
            .join(format!("{}.json", &h[..32]))
    }

    /// Content digest of a file or directory, from the memo when its stamp is unchanged.
    ///
    /// A directory's digest covers the sorted relative names and digests of every regular file
    /// below it (hidden files included, symlinks followed).
    ///
    /// # Errors
    /// When the path is missing or unreadable.
    pub fn hash_path(&self, path: &Path) -> Result<FileRef, CacheError> {
        let abs = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(io_err("resolving", path))?
                .join(path)
        };
        let m = fs::metadata(&abs).map_err(io_err("reading", &abs))?;
        special_file(&abs, &m)?;
        if m.is_dir() {
            let mut files = Vec::new();
            let mut seen = std::collections::BTreeSet::new();
            walk(&abs, &abs, &mut files, &mut seen)?;
            files.sort();
            let mut h = blake3::Hasher::new();
            h.update(b"cedm-dir-v1\0");
            let mut total = 0;
            for (rel, p) in &files {
                let r = self.hash_path(p)?;
                total += r.size;
                h.update(rel.as_bytes());
                h.update(b"\0");
                h.update(&r.digest.0);
            }
            return Ok(FileRef {
                path: abs.to_string_lossy().to_string(),
                digest: Digest(*h.finalize().as_bytes()),
                size: total,
            });
        }
        let st = stamp(&abs, &m);
        let memo_path = self.memo_path(&abs);
        if let Ok(Some(memo)) = read_json::<Memo>(&memo_path, "file memo")
            && memo.stamp == st
        {
            return Ok(FileRef {
                path: st.path,
                digest: memo.digest,
                size: m.len(),
            });
        }
        let digest = Digest::of_file(&abs).map_err(io_err("hashing", &abs))?;
        let size = m.len();
        let memo = Memo { stamp: st, digest };
        // The memo is an optimisation: failing to write it must not fail the run. A read-only
        // view of the cache (`cedm status`) does not write it.
        if !self.is_read_only() {
            let _ = atomic_write(&memo_path, &serde_json::to_vec(&memo).unwrap_or_default());
        }
        Ok(FileRef {
            path: abs.to_string_lossy().to_string(),
            digest,
            size,
        })
    }
}

/// What a file is, in words (`a FIFO (named pipe)`, `a directory`, …), for error messages.
pub fn describe_file_type(t: fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_file() {
        "a regular file"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    }
}

/// Refuse what is neither a regular file nor a directory (`m` follows symlinks).
pub(crate) fn special_file(path: &Path, m: &fs::Metadata) -> Result<(), CacheError> {
    let t = m.file_type();
    if t.is_file() || t.is_dir() {
        return Ok(());
    }
    Err(CacheError::Io {
        op: "reading",
        path: path.to_path_buf(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "{}; expected a regular file or a directory",
                describe_file_type(t)
            ),
        ),
    })
}

/// Every regular file below `dir` (symlinks followed, each directory entered once; FIFOs,
/// sockets and devices skipped).
fn walk(
    base: &Path,
    dir: &Path,
    out: &mut Vec<(String, PathBuf)>,
    seen: &mut std::collections::BTreeSet<(u64, u64)>,
) -> Result<(), CacheError> {
    let dm = fs::metadata(dir).map_err(io_err("reading", dir))?;
    if !seen.insert((dm.dev(), dm.ino())) {
        return Ok(());
    }
    for e in fs::read_dir(dir).map_err(io_err("listing", dir))? {
        let e = e.map_err(io_err("listing", dir))?;
        let p = e.path();
        let m = fs::metadata(&p).map_err(io_err("reading", &p))?;
        if m.is_dir() {
            walk(base, &p, out, seen)?;
        } else if m.is_file() {
            let rel = p
                .strip_prefix(base)
                .unwrap_or(&p)
                .to_string_lossy()
                .to_string();
            out.push((rel, p));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memo_is_used_until_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path().join("c")).unwrap();
        let f = dir.path().join("data.bin");
        fs::write(&f, b"hello").unwrap();
        let a = cache.hash_path(&f).unwrap();
        assert_eq!(a.digest, Digest::of_bytes(b"hello"));
        // Same stamp, so the memo answers even though we poison it to prove it is read.
        let memo_p = cache.memo_path(&f);
        let mut memo: Memo = serde_json::from_slice(&fs::read(&memo_p).unwrap()).unwrap();
        memo.digest = Digest::of_bytes(b"poison");
        fs::write(&memo_p, serde_json::to_vec(&memo).unwrap()).unwrap();
        assert_eq!(
            cache.hash_path(&f).unwrap().digest,
            Digest::of_bytes(b"poison")
        );
        // A changed file (size differs) is rehashed.
        fs::write(&f, b"hello world").unwrap();
        assert_eq!(
            cache.hash_path(&f).unwrap().digest,
            Digest::of_bytes(b"hello world")
        );
    }

    #[test]
    fn directory_digest_depends_on_names_and_content() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path().join("c")).unwrap();
        let d = dir.path().join("imgs");
        fs::create_dir_all(d.join("sub")).unwrap();
        fs::write(d.join("a.png"), b"a").unwrap();
        fs::write(d.join("sub/b.png"), b"b").unwrap();
        let one = cache.hash_path(&d).unwrap();
        assert_eq!(one.size, 2);
        fs::rename(d.join("a.png"), d.join("c.png")).unwrap();
        let two = cache.hash_path(&d).unwrap();
        assert_ne!(one.digest, two.digest);
    }
}
