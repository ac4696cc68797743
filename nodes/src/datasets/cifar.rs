//! CIFAR-10 / CIFAR-100 binary batches, read in file order.
//!
//! Format (<https://www.cs.toronto.edu/~kriz/cifar.html>, "binary version"): each record is the
//! label byte(s) then 3072 bytes, the 32×32 red, green and blue planes row-major. CIFAR-10:
//! `data_batch_1.bin` … `data_batch_5.bin` (train, in that order — the order of torchvision's
//! and EDM's train set, so cluster ids computed elsewhere line up), `test_batch.bin`; one label
//! byte. CIFAR-100: `train.bin`, `test.bin`; a coarse then a fine label byte.

use std::path::{Path, PathBuf};

use cedm_engine::NodeError;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::artifacts::images::ImageSet;

/// Which CIFAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// CIFAR-10 (10 classes).
    Cifar10,
    /// CIFAR-100 (100 fine / 20 coarse classes).
    Cifar100,
}

/// Train or test split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// 50 000 images.
    Train,
    /// 10 000 images.
    Test,
}

/// CIFAR-100 label granularity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LabelKind {
    /// 100 fine classes (the paper's CIFAR-100 labels).
    Fine,
    /// 20 superclasses.
    Coarse,
}

/// The batch files of a variant and split, in order.
pub fn files(dir: &Path, variant: Variant, split: Split) -> Vec<PathBuf> {
    match (variant, split) {
        (Variant::Cifar10, Split::Train) => (1..=5)
            .map(|i| dir.join(format!("data_batch_{i}.bin")))
            .collect(),
        (Variant::Cifar10, Split::Test) => vec![dir.join("test_batch.bin")],
        (Variant::Cifar100, Split::Train) => vec![dir.join("train.bin")],
        (Variant::Cifar100, Split::Test) => vec![dir.join("test.bin")],
    }
}

/// Read CIFAR binary batches.
///
/// # Errors
/// A missing file, or a file whose length is not a whole number of records (each names the file).
pub fn load(
    dir: &Path,
    variant: Variant,
    split: Split,
    labels: LabelKind,
) -> Result<ImageSet, NodeError> {
    let label_bytes = match variant {
        Variant::Cifar10 => 1,
        Variant::Cifar100 => 2,
    };
    let rec = label_bytes + 3072;
    let mut pixels = Vec::new();
    let mut ls = Vec::new();
    for f in files(dir, variant, split) {
        let bytes = std::fs::read(&f).map_err(NodeError::io("reading CIFAR batch", &f))?;
        if bytes.is_empty() || bytes.len() % rec != 0 {
            return Err(NodeError::msg(format!(
                "{}: {} bytes is not a whole number of {rec}-byte {} records (truncated, or the wrong variant?)",
                f.display(),
                bytes.len(),
                match variant {
                    Variant::Cifar10 => "CIFAR-10",
                    Variant::Cifar100 => "CIFAR-100",
                }
            )));
        }
        for r in bytes.chunks_exact(rec) {
            let label = match (variant, labels) {
                (Variant::Cifar10, _) => r[0],
                (Variant::Cifar100, LabelKind::Coarse) => r[0],
                (Variant::Cifar100, LabelKind::Fine) => r[1],
            };
            ls.push(i64::from(label));
            pixels.extend_from_slice(&r[label_bytes..]);
        }
    }
    Ok(ImageSet {
        n: ls.len(),
        c: 3,
        h: 32,
        w: 32,
        pixels,
        labels: Some(ls),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(label: &[u8], fill: u8) -> Vec<u8> {
        let mut r = label.to_vec();
        r.extend((0..3072).map(|i| fill.wrapping_add((i % 7) as u8)));
        r
    }

    #[test]
    fn reads_batches_in_file_order() {
        let dir = tempfile::tempdir().unwrap();
        for i in 1..=5u8 {
            let mut b = record(&[i], i);
            b.extend(record(&[i + 10], i + 100));
            std::fs::write(dir.path().join(format!("data_batch_{i}.bin")), b).unwrap();
        }
        let s = load(dir.path(), Variant::Cifar10, Split::Train, LabelKind::Fine).unwrap();
        assert_eq!((s.n, s.c, s.h, s.w), (10, 3, 32, 32));
        assert_eq!(s.labels.unwrap(), vec![1, 11, 2, 12, 3, 13, 4, 14, 5, 15]);
        assert_eq!(s.pixels[3072], 101);
    }

    #[test]
    fn cifar100_fine_and_coarse() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("test.bin"),
            [record(&[3, 42], 0), record(&[4, 77], 0)].concat(),
        )
        .unwrap();
        let f = load(dir.path(), Variant::Cifar100, Split::Test, LabelKind::Fine).unwrap();
        assert_eq!(f.labels.unwrap(), vec![42, 77]);
        let c = load(
            dir.path(),
            Variant::Cifar100,
            Split::Test,
            LabelKind::Coarse,
        )
        .unwrap();
        assert_eq!(c.labels.unwrap(), vec![3, 4]);
    }

    #[test]
    fn truncated_and_missing_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("test_batch.bin"), vec![0u8; 3000]).unwrap();
        let e = load(dir.path(), Variant::Cifar10, Split::Test, LabelKind::Fine)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("test_batch.bin") && e.contains("whole number"),
            "{e}"
        );
        let e = load(dir.path(), Variant::Cifar10, Split::Train, LabelKind::Fine)
            .unwrap_err()
            .to_string();
        assert!(e.contains("data_batch_1.bin"), "{e}");
    }
}
