//! Node keys: blake3 over a canonical encoding of what determines a node's output.

use std::collections::BTreeMap;

use cedm_cache::Digest;

/// Canonical JSON: object keys sorted at every level, no whitespace. Numbers are written by
/// serde_json's shortest round-trip formatting, so `1e-3` and `0.001` encode the same.
pub fn canonical_json(v: &serde_json::Value) -> String {
    fn sorted(v: &serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => {
                let b: BTreeMap<&String, serde_json::Value> =
                    m.iter().map(|(k, v)| (k, sorted(v))).collect();
                let mut out = serde_json::Map::new();
                for (k, v) in b {
                    out.insert(k.clone(), v);
                }
                serde_json::Value::Object(out)
            }
            serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(v).to_string()
}

/// Everything a key is computed from.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyInput<'a> {
    /// Node kind.
    pub kind: &'a str,
    /// Kind implementation version.
    pub version: u32,
    /// Canonical params without file params.
    pub params: &'a serde_json::Value,
    /// Upstream combined output digests by slot.
    pub inputs: &'a BTreeMap<String, Digest>,
    /// External file content digests by param.
    pub files: &'a BTreeMap<String, Digest>,
}

/// The key of a node: `blake3("cedm-key-v1\0" ‖ canonical JSON of its KeyInput)`.
pub fn node_key(k: &KeyInput<'_>) -> Digest {
    let inputs: serde_json::Map<String, serde_json::Value> = k
        .inputs
        .iter()
        .map(|(s, d)| (s.clone(), d.to_hex().into()))
        .collect();
    let files: serde_json::Map<String, serde_json::Value> = k
        .files
        .iter()
        .map(|(s, d)| (s.clone(), d.to_hex().into()))
        .collect();
    let doc = serde_json::json!({
        "kind": k.kind,
        "version": k.version,
        "params": k.params,
        "inputs": inputs,
        "files": files,
    });
    let mut h = blake3::Hasher::new();
    h.update(b"cedm-key-v1\0");
    h.update(canonical_json(&doc).as_bytes());
    Digest(*h.finalize().as_bytes())
}

/// The identity of a trajectory ([`crate::kind::Trajectory`]): the key without its length
/// param, under its own domain so that it never equals a node key.
pub fn trajectory_key(k: &KeyInput<'_>, length: &str) -> Digest {
    let mut params = k.params.clone();
    if let Some(m) = params.as_object_mut() {
        m.remove(length);
    }
    let inner = node_key(&KeyInput {
        params: &params,
        ..k.clone()
    });
    let mut h = blake3::Hasher::new();
    h.update(b"cedm-trajectory-v1\0");
    h.update(&inner.0);
    Digest(*h.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_and_normalises_numbers() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"b": 0.001, "a": {"y": 1, "x": [2, 1]}}"#).unwrap();
        let b: serde_json::Value =
            serde_json::from_str(r#"{"a": {"x": [2, 1], "y": 1}, "b": 1e-3}"#).unwrap();
        assert_eq!(canonical_json(&a), canonical_json(&b));
        assert_eq!(canonical_json(&a), r#"{"a":{"x":[2,1],"y":1},"b":0.001}"#);
    }

    #[test]
    fn key_changes_with_each_component() {
        let p = serde_json::json!({"k": 1});
        let p2 = serde_json::json!({"k": 2});
        let none = BTreeMap::new();
        let one: BTreeMap<String, Digest> = [("x".to_string(), Digest::of_bytes(b"x"))].into();
        let base = KeyInput {
            kind: "a/b",
            version: 1,
            params: &p,
            inputs: &none,
            files: &none,
        };
        let k = node_key(&base);
        assert_eq!(k, node_key(&base.clone()));
        assert_ne!(
            k,
            node_key(&KeyInput {
                version: 2,
                ..base.clone()
            })
        );
        assert_ne!(
            k,
            node_key(&KeyInput {
                kind: "a/c",
                ..base.clone()
            })
        );
        assert_ne!(
            k,
            node_key(&KeyInput {
                params: &p2,
                ..base.clone()
            })
        );
        assert_ne!(
            k,
            node_key(&KeyInput {
                inputs: &one,
                ..base.clone()
            })
        );
        assert_ne!(
            k,
            node_key(&KeyInput {
                files: &one,
                ..base.clone()
            })
        );
    }
}
