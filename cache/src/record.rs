//! Node records: what a key computed, from what, and where its outputs are.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Digest;

/// Format version of record files; bumped when their layout changes.
pub const RECORD_FORMAT: u32 = 1;

/// One output file of a node: its name in the node's output set and its content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputRef {
    /// Content digest; the object lives at `objects/<2 hex>/<digest>`.
    pub digest: Digest,
    /// Size in bytes, checked on every cache hit.
    pub size: u64,
}

/// An upstream artifact a node consumed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRef {
    /// The upstream node's key (its record).
    pub key: Digest,
    /// The upstream node's combined output digest (what the key depends on).
    pub digest: Digest,
}

/// A file outside the cache (dataset, weights) a node read, by content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// Path as resolved when the node ran (informational: the key uses the digest only).
    pub path: String,
    /// Content digest (for a directory, the digest of its sorted listing of names and digests).
    pub digest: Digest,
    /// Size in bytes (sum over files for a directory).
    pub size: u64,
}

/// How a record came to be; none of this is part of the key.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunMeta {
    /// Experiment name from the YAML.
    #[serde(default)]
    pub experiment: String,
    /// Node id in the YAML.
    #[serde(default)]
    pub node: String,
    /// Node instance label, e.g. `temi[C=10]`.
    #[serde(default)]
    pub instance: String,
    /// RFC 3339 start time.
    #[serde(default)]
    pub started: String,
    /// Wall time of the run in seconds.
    #[serde(default)]
    pub seconds: f64,
    /// Device the node ran on, e.g. `cpu (flex)`.
    #[serde(default)]
    pub device: String,
    /// Host that ran it.
    #[serde(default)]
    pub host: String,
    /// cedm version that ran it.
    #[serde(default)]
    pub cedm_version: String,
    /// How it was executed: `local`, or `slurm:<jobid>`.
    #[serde(default)]
    pub executor: String,
    /// Digest of the node's log (stored as an object, not an output, so that logs never break
    /// early cutoff).
    #[serde(default)]
    pub log: Option<Digest>,
    /// Peak resident memory of the process when the node finished, in bytes, if known.
    #[serde(default)]
    pub peak_rss: Option<u64>,
    /// Free-form numbers the node reported (timings of phases, throughput).
    #[serde(default)]
    pub stats: BTreeMap<String, f64>,
    /// For a snapshot of a trajectory (a training that a longer one continues): the object with
    /// the state a longer run resumes from. Not an output, so it never changes the output digest
    /// (a record published without it is the same result).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<Digest>,
}

/// A published node result. Written last: its presence is the commit point of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Layout version of this file.
    pub format: u32,
    /// The node key (blake3 of kind, version, params, inputs, files).
    pub key: Digest,
    /// Node kind, e.g. `cluster/temi`.
    pub kind: String,
    /// Version of the kind's implementation.
    pub kind_version: u32,
    /// Canonical params (defaults filled in, file params replaced by `files`).
    pub params: serde_json::Value,
    /// Upstream artifacts by input slot.
    pub inputs: BTreeMap<String, InputRef>,
    /// External files by param name.
    pub files: BTreeMap<String, FileRef>,
    /// Output files by name.
    pub outputs: BTreeMap<String, OutputRef>,
    /// Combined digest of `outputs`; downstream keys use this.
    pub output_digest: Digest,
    /// Provenance and timings.
    pub meta: RunMeta,
}

impl Record {
    /// Total size of the outputs in bytes.
    pub fn output_bytes(&self) -> u64 {
        self.outputs.values().map(|o| o.size).sum()
    }
}

/// The combined digest of a node's output set: names and contents, order-independent.
pub fn combined_digest(outputs: &BTreeMap<String, OutputRef>) -> Digest {
    let mut h = blake3::Hasher::new();
    h.update(b"cedm-outputs-v1\0");
    for (name, o) in outputs {
        h.update(name.as_bytes());
        h.update(b"\0");
        h.update(&o.digest.0);
    }
    Digest(*h.finalize().as_bytes())
}

/// A run that failed: kept for inspection (`cedm cache show`), never a cache hit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// The key that failed.
    pub key: Digest,
    /// Node kind.
    pub kind: String,
    /// The error message chain.
    pub error: String,
    /// Provenance (the log digest points at what the node printed before failing).
    pub meta: RunMeta,
}
