//! Path safety of everything the cache reads, writes, moves or deletes (issue 16).
//!
//! The cache tree and its records are input: a shared cache on NFS is writable by colleagues,
//! and a crafted record or a symlink planted anywhere in the tree must not make `gc`, `verify`,
//! `export`, quarantine or a lookup touch anything outside the cache (or outside the export
//! target). The rules, applied in one place each:
//!
//! - **Records are validated when read** ([`validate_record`]): the key matches the file's
//!   name, the output digest matches the outputs, and every output name is a relative path of
//!   plain components (no `..`, `.`, absolute paths, empty parts, backslashes or control
//!   characters; not `record.json`). A record that fails is malformed: never acted on.
//! - **No symlink is followed inside the cache** ([`real_dir`], [`object_file`]): the top-level
//!   directories and their shards must be real directories, objects regular files; listings
//!   ([`list_sharded`]) skip anything else and report it.
//! - **Exports write only below the target** ([`export_file`]): no directory or file on the way
//!   may be a symlink, files are created fresh (`O_EXCL`) with mode 0644 (umask applied) and
//!   renamed into place, and the bytes are checked against their digest while they are copied.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::record::{Record, combined_digest};
use crate::{CacheError, Digest};

/// Why an output name is unsafe, if it is.
pub fn bad_output_name(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.len() > 4096 {
        return Some("empty or longer than 4096 bytes");
    }
    if name.chars().any(|c| c.is_control() || c == '\\') {
        return Some("contains a control character or a backslash");
    }
    if name == "record.json" {
        return Some("`record.json` is reserved for the record itself");
    }
    if name.starts_with('/') || name.ends_with('/') || name.contains("//") {
        return Some("is absolute or has an empty component");
    }
    // Split by hand: Path::components drops `.` parts silently.
    if name.split('/').any(|c| c == "." || c == "..") {
        return Some("has a `.` or `..` component");
    }
    None
}

/// Check a record read from `path` (whose file name is `<key>.json`).
///
/// # Errors
/// What is wrong, as a malformed-record error naming the file.
pub fn validate_record(r: &Record, path: &Path) -> Result<(), CacheError> {
    let bad = |message: String| CacheError::Malformed {
        what: "record",
        path: path.to_path_buf(),
        message,
    };
    let stem = path.file_stem().map(|s| s.to_string_lossy().to_string());
    if stem.as_deref() != Some(r.key.to_hex().as_str()) {
        return Err(bad(format!("its key {} is not its file name", r.key)));
    }
    if r.format > crate::record::RECORD_FORMAT {
        return Err(bad(format!(
            "format {} is newer than this cedm understands",
            r.format
        )));
    }
    for name in r.outputs.keys() {
        if let Some(why) = bad_output_name(name) {
            return Err(bad(format!("output name {name:?} {why}")));
        }
    }
    if combined_digest(&r.outputs) != r.output_digest {
        return Err(bad("its output digest does not match its outputs".into()));
    }
    Ok(())
}

/// Whether `p` is a real directory (not a symlink to one).
pub fn real_dir(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_dir())
}

/// `root/dir/xx/name` as a path that is safe to open: every directory below `root` real, the
/// file itself a regular file (no symlink anywhere). `Ok(None)` when it does not exist.
///
/// # Errors
/// When a directory on the way or the file is a symlink or a special file.
pub fn object_file(root: &Path, rel: &Path) -> Result<Option<PathBuf>, CacheError> {
    let mut p = root.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    for (i, c) in parts.iter().enumerate() {
        p.push(c);
        let m = match fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(crate::io_err("reading", &p)(e)),
        };
        let last = i + 1 == parts.len();
        let ok = if last {
            m.file_type().is_file()
        } else {
            m.file_type().is_dir()
        };
        if !ok {
            return Err(CacheError::Io {
                op: "reading",
                path: p.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    if m.file_type().is_symlink() {
                        "a symlink inside the cache (cedm never follows one there)"
                    } else if last {
                        "not a regular file"
                    } else {
                        "not a directory"
                    },
                ),
            });
        }
    }
    Ok(Some(p))
}

/// What a listing of a sharded directory found.
#[derive(Default)]
pub struct Listing {
    /// Regular files `dir/xx/name` in real shard directories, sorted.
    pub files: Vec<PathBuf>,
    /// Anything else: symlinks, special files, files outside a shard, shards that are not
    /// directories.
    pub strays: Vec<PathBuf>,
}

/// The files of `dir/xx/…` without following any symlink (an absent or symlinked `dir` lists
/// nothing; its path is a stray when it is a symlink).
pub fn list_sharded(dir: &Path) -> Listing {
    let mut out = Listing::default();
    match fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_dir() => {}
        Ok(_) => {
            out.strays.push(dir.to_path_buf());
            return out;
        }
        Err(_) => return out,
    }
    let Ok(shards) = fs::read_dir(dir) else {
        return out;
    };
    for s in shards.flatten() {
        let sp = s.path();
        if !s.file_type().is_ok_and(|t| t.is_dir()) {
            out.strays.push(sp);
            continue;
        }
        if let Ok(files) = fs::read_dir(&sp) {
            for f in files.flatten() {
                if f.file_type().is_ok_and(|t| t.is_file()) {
                    out.files.push(f.path());
                } else {
                    out.strays.push(f.path());
                }
            }
        }
    }
    out.files.sort();
    out.strays.sort();
    out
}

/// The digest an object file's name and shard stand for, when both agree (`objects/ab/ab…`,
/// lowercase hex).
pub fn object_name_digest(p: &Path) -> Option<Digest> {
    let name = p.file_name()?.to_str()?;
    let shard = p.parent()?.file_name()?.to_str()?;
    let d: Digest = name.parse().ok()?;
    (d.to_hex() == name && name.get(..2) == Some(shard)).then_some(d)
}

/// Copy the object at `src` (a path from [`object_file`]) to `dir/name` (`name` checked by
/// [`bad_output_name`]), checking its digest on the way: no directory below `dir` and no file
/// written may be a symlink, the file is created fresh with mode 0644 (umask applied) and
/// renamed into place. Returns the destination.
///
/// # Errors
/// A symlink or special file on the way, a digest mismatch, I/O errors.
pub fn export_file(
    src: &Path,
    want: &Digest,
    dir: &Path,
    name: &str,
) -> Result<PathBuf, CacheError> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(why) = bad_output_name(name) {
        return Err(CacheError::BadOutput {
            name: name.to_string(),
            message: why.to_string(),
        });
    }
    let dest = dir.join(name);
    // Every directory between `dir` and the file: created if absent, never a symlink.
    let mut p = dir.to_path_buf();
    let comps: Vec<_> = Path::new(name).components().collect();
    for c in &comps[..comps.len().saturating_sub(1)] {
        p.push(c);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(_) => {
                return Err(CacheError::Io {
                    op: "exporting into",
                    path: p.clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "exists and is not a directory (symlinks are not followed)",
                    ),
                });
            }
            Err(_) => fs::create_dir(&p).map_err(crate::io_err("creating", &p))?,
        }
    }
    if fs::symlink_metadata(&dest).is_ok_and(|m| !m.file_type().is_file()) {
        return Err(CacheError::Io {
            op: "exporting to",
            path: dest.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "exists and is not a regular file (symlinks are not followed)",
            ),
        });
    }
    let parent = dest.parent().unwrap_or(dir);
    let tmp = parent.join(crate::fsutil::unique_name(".cedm-export-"));
    let result = (|| -> Result<(), CacheError> {
        let mut input = fs::OpenOptions::new()
            .read(true)
            .custom_flags(O_NOFOLLOW)
            .open(src)
            .map_err(crate::io_err("opening", src))?;
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
            .map_err(crate::io_err("creating", &tmp))?;
        let mut h = blake3::Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = input
                .read(&mut buf)
                .map_err(crate::io_err("reading", src))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(crate::io_err("writing", &tmp))?;
        }
        if Digest(*h.finalize().as_bytes()) != *want {
            return Err(CacheError::Io {
                op: "exporting",
                path: src.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "the object does not match its digest (run `cedm cache verify`)",
                ),
            });
        }
        out.sync_all().map_err(crate::io_err("syncing", &tmp))?;
        fs::rename(&tmp, &dest).map_err(crate::io_err("renaming into", &dest))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map(|()| dest)
}

/// Write `bytes` to `dir/name` the way [`export_file`] writes (fresh file, 0644, renamed in;
/// a symlink at the destination is replaced, never followed).
///
/// # Errors
/// I/O errors.
pub fn export_bytes(bytes: &[u8], dir: &Path, name: &str) -> Result<PathBuf, CacheError> {
    use std::os::unix::fs::OpenOptionsExt;
    let dest = dir.join(name);
    let tmp = dir.join(crate::fsutil::unique_name(".cedm-export-"));
    let r = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| fs::rename(&tmp, &dest));
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r.map_err(crate::io_err("writing", &dest))?;
    Ok(dest)
}

/// `O_NOFOLLOW` for this platform (its value differs between architectures).
const O_NOFOLLOW: i32 = rustix::fs::OFlags::NOFOLLOW.bits() as i32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_names_must_be_plain_relative_paths() {
        for ok in ["images.safetensors", "grid/row_01.png", "a.b/c"] {
            assert_eq!(bad_output_name(ok), None, "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "./x",
            "a//b",
            "a/",
            "record.json",
            "a\\b",
            "a\nb",
            "a/./b",
        ] {
            assert!(bad_output_name(bad).is_some(), "{bad:?}");
        }
    }
}
