//! cedm-remote: the remote tier of cedm's cache — records and objects in an S3-compatible
//! object store, for moving results between a laptop and a cluster. A crate of its own so that
//! the `remote` feature of the binary adds an HTTP stack without rebuilding the engine and the
//! node kinds.
//!
//! Layout under the URL's prefix, as in a local cache: `objects/ab/<blake3>` and
//! `records/ab/<key>.json`. Pushing uploads a record's objects first and the record last, so a
//! record visible remotely always has its objects there; objects are named by their content, so
//! concurrent pushers of the same results write the same bytes. Pulling checks every fetched
//! object against its blake3 digest and validates every record before anything is written
//! locally; a corrupt remote object is reported and never enters the cache.
//!
//! Through `object_store` (Apache Arrow's maintained client), configured the usual way: the URL
//! `s3://bucket/prefix`, credentials and region from `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, an S3-compatible server from `AWS_ENDPOINT_URL`
//! (`AWS_ALLOW_HTTP=true` for plain HTTP).

#![forbid(unsafe_code)]

use std::sync::Arc;

use object_store::path::Path as RemotePath;
use object_store::{ObjectStore, PutPayload};

use cedm_cache::{Cache, CacheError, Digest};

/// An open remote store.
pub struct Remote {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    url: String,
    rt: tokio::runtime::Runtime,
}

/// What a push or pull did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transfer {
    /// Records sent or received.
    pub records: usize,
    /// Objects sent or received.
    pub objects: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Records that were already there (nothing to do).
    pub present: usize,
    /// Keys asked for that the other side does not have.
    pub missing: Vec<Digest>,
    /// Remote records or objects that failed their check (not written locally).
    pub corrupt: Vec<String>,
}

fn remote_err(url: &str, e: impl std::fmt::Display) -> CacheError {
    CacheError::Remote {
        url: url.to_string(),
        message: e.to_string(),
    }
}

impl Remote {
    /// Open `url` (`s3://bucket[/prefix]`).
    ///
    /// # Errors
    /// A URL that is not an object store's, or a configuration the client rejects.
    pub fn open(url: &str) -> Result<Remote, CacheError> {
        let parsed = url::Url::parse(url).map_err(|e| remote_err(url, e))?;
        if parsed.scheme() != "s3" {
            return Err(remote_err(
                url,
                "only s3:// URLs (S3 and S3-compatible servers) are supported",
            ));
        }
        let bucket = parsed
            .host_str()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| remote_err(url, "no bucket: write s3://BUCKET/PREFIX"))?;
        let store = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| remote_err(url, e))?;
        let prefix = parsed.path().trim_matches('/').to_string();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| remote_err(url, e))?;
        Ok(Remote {
            store: Arc::new(store),
            prefix,
            url: url.to_string(),
            rt,
        })
    }

    /// The URL it was opened with.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn path(&self, dir: &str, d: &Digest, ext: &str) -> RemotePath {
        let hex = d.to_hex();
        let rel = format!("{dir}/{}/{hex}{ext}", &hex[..2]);
        if self.prefix.is_empty() {
            RemotePath::from(rel)
        } else {
            RemotePath::from(format!("{}/{rel}", self.prefix))
        }
    }

    fn exists(&self, p: &RemotePath) -> Result<bool, CacheError> {
        match self.rt.block_on(self.store.head(p)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(remote_err(&self.url, e)),
        }
    }

    fn get(&self, p: &RemotePath) -> Result<Option<Vec<u8>>, CacheError> {
        let got = self.rt.block_on(async {
            match self.store.get(p).await {
                Ok(r) => r.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        got.map(|b| b.map(|b| b.to_vec()))
            .map_err(|e| remote_err(&self.url, e))
    }

    fn put(&self, p: &RemotePath, bytes: Vec<u8>) -> Result<(), CacheError> {
        self.rt
            .block_on(self.store.put(p, PutPayload::from(bytes)))
            .map(|_| ())
            .map_err(|e| remote_err(&self.url, e))
    }

    /// Upload the records of `keys` with their objects (objects the remote has are skipped).
    ///
    /// # Errors
    /// A local object that cannot be read, or the remote failing.
    pub fn push(&self, cache: &Cache, keys: &[Digest]) -> Result<Transfer, CacheError> {
        let mut t = Transfer::default();
        for key in keys {
            let Some(record) = cache.record(key)? else {
                t.missing.push(*key);
                continue;
            };
            let rpath = self.path("records", key, ".json");
            if self.exists(&rpath)? {
                t.present += 1;
                continue;
            }
            // Objects first: a remote record never points at an absent object.
            for out in record.outputs.values() {
                let opath = self.path("objects", &out.digest, "");
                if self.exists(&opath)? {
                    continue;
                }
                let bytes = cache.read_object(&out.digest)?;
                if Digest::of_bytes(&bytes) != out.digest {
                    return Err(CacheError::Malformed {
                        what: "object",
                        path: cache.object_path(&out.digest),
                        message: "its content does not match its digest; run `cedm cache verify`"
                            .into(),
                    });
                }
                t.bytes += bytes.len() as u64;
                self.put(&opath, bytes)?;
                t.objects += 1;
            }
            let body = serde_json::to_vec_pretty(&record).map_err(|e| remote_err(&self.url, e))?;
            self.put(&rpath, body)?;
            t.records += 1;
        }
        Ok(t)
    }

    /// Fetch the record of `key` and its objects into `cache`, each object checked against its
    /// digest before it is written; the record is written last. `Ok(None)` when the remote
    /// lacks the key; `Err` names what failed its check.
    fn pull_one(&self, cache: &Cache, key: &Digest, t: &mut Transfer) -> Result<(), CacheError> {
        let rpath = self.path("records", key, ".json");
        let Some(bytes) = self.get(&rpath)? else {
            t.missing.push(*key);
            return Ok(());
        };
        let record: cedm_cache::Record = match serde_json::from_slice(&bytes) {
            Ok(r) => r,
            Err(e) => {
                t.corrupt.push(format!("{rpath}: not a record ({e})"));
                return Ok(());
            }
        };
        for (name, out) in &record.outputs {
            if cache.has_object(&out.digest, out.size)? {
                continue;
            }
            let opath = self.path("objects", &out.digest, "");
            let Some(obj) = self.get(&opath)? else {
                t.corrupt
                    .push(format!("{opath}: output `{name}` is missing remotely"));
                return Ok(());
            };
            // Checked against its digest before it is written; a mismatch writes nothing.
            if !cache.import_object(&out.digest, &obj)? {
                t.corrupt.push(format!(
                    "{opath}: output `{name}` does not match its digest (not written)"
                ));
                return Ok(());
            }
            t.bytes += obj.len() as u64;
            t.objects += 1;
        }
        if let Err(e) = cache.import_record(key, &record) {
            t.corrupt.push(format!("{rpath}: {e}"));
            return Ok(());
        }
        t.records += 1;
        Ok(())
    }

    /// Fetch the records of `keys` the local cache lacks, with their objects.
    ///
    /// # Errors
    /// The remote or the local filesystem failing (a corrupt remote object is not an error:
    /// it is listed in [`Transfer::corrupt`] and skipped).
    pub fn pull(&self, cache: &Cache, keys: &[Digest]) -> Result<Transfer, CacheError> {
        let mut t = Transfer::default();
        for key in keys {
            if cache.record(key)?.is_some() {
                t.present += 1;
                continue;
            }
            self.pull_one(cache, key, &mut t)?;
        }
        Ok(t)
    }

    /// Every key with a record remotely.
    ///
    /// # Errors
    /// The remote failing.
    pub fn keys(&self) -> Result<Vec<Digest>, CacheError> {
        use futures_util::TryStreamExt;
        let prefix = if self.prefix.is_empty() {
            RemotePath::from("records")
        } else {
            RemotePath::from(format!("{}/records", self.prefix))
        };
        let metas: Vec<object_store::ObjectMeta> = self
            .rt
            .block_on(self.store.list(Some(&prefix)).try_collect())
            .map_err(|e| remote_err(&self.url, e))?;
        let mut keys: Vec<Digest> = metas
            .iter()
            .filter_map(|m| {
                m.location
                    .filename()?
                    .strip_suffix(".json")?
                    .parse::<Digest>()
                    .ok()
            })
            .collect();
        keys.sort();
        keys.dedup();
        Ok(keys)
    }
}
