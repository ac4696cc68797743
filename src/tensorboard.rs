//! TensorBoard event files of the live scalar streams (`cedm watch --tensorboard DIR`).
//!
//! An event file is a TFRecord stream (each record: the data length as u64 LE, the masked
//! CRC-32C of those 8 bytes, the data, the masked CRC-32C of the data) of serialized `Event`
//! protocol buffers (`tensorboard/compat/proto/event.proto`): first one with `file_version`
//! `brain.Event:2`, then one per point with `wall_time`, `step` and a `Summary` of
//! `simple_value`s. The bytes equal what TensorBoard's own writer produces for the same events
//! (`tests/parity/tb_events.py`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use cedm_engine::node::ScalarLine;

fn masked_crc(data: &[u8]) -> u32 {
    let c = crc32c::crc32c(data);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One TFRecord around `data`.
pub fn record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field.
fn bytes_field(out: &mut Vec<u8>, field: u64, data: &[u8]) {
    varint(out, (field << 3) | 2);
    varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

/// The head of an `Event`: `wall_time` (1, double) and `step` (2, int64); proto3 leaves zeros out.
fn event_head(wall_time: f64, step: i64) -> Vec<u8> {
    let mut e = Vec::new();
    if wall_time != 0.0 {
        e.push(0x09);
        e.extend_from_slice(&wall_time.to_le_bytes());
    }
    if step != 0 {
        e.push(0x10);
        // int64: negative values as their two's complement (ten bytes).
        varint(&mut e, step as u64);
    }
    e
}

/// The `Event` that opens a file (`file_version`, field 3).
pub fn version_event(wall_time: f64) -> Vec<u8> {
    let mut e = event_head(wall_time, 0);
    bytes_field(&mut e, 3, b"brain.Event:2");
    e
}

/// An `Event` with a `Summary` (field 5) of one `Value` (tag 1, simple_value 2) per scalar.
pub fn scalars_event(wall_time: f64, step: i64, values: &[(&str, f32)]) -> Vec<u8> {
    let mut summary = Vec::new();
    for (tag, v) in values {
        let mut value = Vec::new();
        bytes_field(&mut value, 1, tag.as_bytes());
        value.push(0x15);
        value.extend_from_slice(&v.to_le_bytes());
        bytes_field(&mut summary, 1, &value);
    }
    let mut e = event_head(wall_time, step);
    bytes_field(&mut e, 5, &summary);
    e
}

/// A directory name for an instance label: `/` and anything a file name should not hold become `_`.
fn run_name(label: &str) -> String {
    if label.chars().all(|c| c == '.') {
        // Never `.` or `..`.
        return label.replace('.', "_");
    }
    label
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || "[]=,.-_+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Mirrors live scalar streams into event files below a directory, one run directory per
/// instance (`DIR/<label>/events.out.tfevents.<start>.cedm.<key>`), appending the points each
/// look has not written yet. A file met again in a later `watch` is rewritten from its stream.
pub struct Mirror {
    dir: PathBuf,
    /// Per key: the file and the time of the last point written.
    files: BTreeMap<String, (PathBuf, f64)>,
}

impl Mirror {
    /// A mirror into `dir` (created when the first stream is written).
    #[must_use]
    pub fn new(dir: &Path) -> Mirror {
        Mirror {
            dir: dir.to_path_buf(),
            files: BTreeMap::new(),
        }
    }

    /// Append the new points of one instance's stream.
    ///
    /// # Errors
    /// The directory or the file cannot be written.
    pub fn update(&mut self, label: &str, key: &str, lines: &[ScalarLine]) -> std::io::Result<()> {
        let Some(first) = lines.first() else {
            return Ok(());
        };
        let (mut file, last_t) = match self.files.get(key) {
            Some((path, t)) => (
                std::fs::OpenOptions::new().append(true).open(path)?,
                Some(*t),
            ),
            None => {
                let run = self.dir.join(run_name(label));
                std::fs::create_dir_all(&run)?;
                let path = run.join(format!(
                    "events.out.tfevents.{}.cedm.{}",
                    first.t as i64,
                    &key[..key.len().min(12)]
                ));
                let mut f = std::fs::File::create(&path)?;
                f.write_all(&record(&version_event(first.t)))?;
                self.files
                    .insert(key.to_string(), (path, f64::NEG_INFINITY));
                (f, None)
            }
        };
        let mut buf = Vec::new();
        let mut newest = last_t.unwrap_or(f64::NEG_INFINITY);
        for l in lines.iter().filter(|l| last_t.is_none_or(|t| l.t > t)) {
            let values: Vec<(&str, f32)> = l
                .values
                .iter()
                .filter_map(|(k, v)| v.map(|v| (k.as_str(), v as f32)))
                .collect();
            buf.extend(record(&scalars_event(l.t, l.step.round() as i64, &values)));
            newest = newest.max(l.t);
        }
        file.write_all(&buf)?;
        if let Some(e) = self.files.get_mut(key) {
            e.1 = newest;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What TensorBoard's writer wrote for the same events (tests/parity/tb_events.py).
    #[test]
    fn event_bytes_equal_tensorboards_writer() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/parity/tensorboard.tfevents");
        let want = std::fs::read(&path).expect("fixture");
        let mut got = record(&version_event(1_700_000_000.25));
        got.extend(record(&scalars_event(
            1_700_000_001.5,
            0,
            &[("loss", 0.75), ("lr", 1e-3)],
        )));
        got.extend(record(&scalars_event(
            1_700_000_002.5,
            2048,
            &[("img_per_s", 123.5), ("loss", -0.0)],
        )));
        got.extend(record(&scalars_event(
            1_700_000_003.0,
            300_000_000_000,
            &[("kimg", 3e8), ("loss", f32::MIN_POSITIVE)],
        )));
        assert_eq!(got, want);
    }

    #[test]
    fn run_names_are_one_path_component() {
        assert_eq!(run_name("train[C=10]"), "train[C=10]");
        assert_eq!(run_name("a/b c"), "a_b_c");
        assert_eq!(run_name(".."), "__");
        assert_eq!(run_name(""), "");
    }
}
