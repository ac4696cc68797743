//! A folder or a zip of PNG/JPEG images (EDM's `dataset_tool.py` layout:
//! `00000/img00000000.png` …, optional `dataset.json` with `{"labels": [[name, label], …]}`)
//! read into an image set, with centre crop and resize to a target resolution.
//!
//! Images are taken in sorted order of their paths (as EDM's `ImageFolderDataset` does).
//! Resizing: centre-crop to a square, then an antialiased resize (default Lanczos-3, PIL's
//! `LANCZOS`, which `dataset_tool.py` uses for FFHQ 1024 → 64).

use std::io::Read;
use std::path::Path;

use cedm_engine::NodeError;
use cedm_kernels::imageops::{Filter, resize_plane};
use rayon::prelude::*;

use crate::artifacts::images::ImageSet;

fn is_image(name: &str) -> bool {
    let l = name.to_ascii_lowercase();
    l.ends_with(".png") || l.ends_with(".jpg") || l.ends_with(".jpeg")
}

/// A decoded image: channels (1 or 3), height, width, pixels CHW.
struct Decoded {
    c: usize,
    h: usize,
    w: usize,
    chw: Vec<u8>,
}

fn decode(bytes: &[u8], what: &str) -> Result<Decoded, NodeError> {
    let img = image::load_from_memory(bytes)
        .map_err(|e| NodeError::msg(format!("{what}: not a readable PNG/JPEG image: {e}")))?;
    let grey = matches!(
        img.color(),
        image::ColorType::L8
            | image::ColorType::L16
            | image::ColorType::La8
            | image::ColorType::La16
    );
    let (w, h) = (img.width() as usize, img.height() as usize);
    if grey {
        Ok(Decoded {
            c: 1,
            h,
            w,
            chw: img.to_luma8().into_raw(),
        })
    } else {
        let rgb = img.to_rgb8().into_raw();
        let mut chw = vec![0u8; 3 * h * w];
        for (i, px) in rgb.chunks_exact(3).enumerate() {
            for c in 0..3 {
                chw[c * h * w + i] = px[c];
            }
        }
        Ok(Decoded { c: 3, h, w, chw })
    }
}

/// Centre-crop to a square and resize to `res` (antialiased), per channel.
fn crop_resize(d: &Decoded, res: usize, filter: Filter) -> Vec<u8> {
    let s = d.h.min(d.w);
    let (y0, x0) = ((d.h - s) / 2, (d.w - s) / 2);
    let mut out = Vec::with_capacity(d.c * res * res);
    let mut plane = vec![0f32; s * s];
    let mut dst = vec![0f32; res * res];
    for c in 0..d.c {
        for y in 0..s {
            for x in 0..s {
                plane[y * s + x] = f32::from(d.chw[c * d.h * d.w + (y0 + y) * d.w + x0 + x]);
            }
        }
        if s == res {
            dst.copy_from_slice(&plane);
        } else {
            resize_plane(&plane, s, s, res, res, filter, &mut dst);
        }
        out.extend(dst.iter().map(|v| v.round().clamp(0.0, 255.0) as u8));
    }
    out
}

/// Largest image (or dataset.json) accepted, compressed or not: 256 MiB.
const MAX_ENTRY_BYTES: u64 = 256 << 20;

/// Entries (name, bytes) of a folder or zip, sorted by name, and `dataset.json` if present.
fn entries(path: &Path) -> Result<(Vec<(String, Vec<u8>)>, Option<Vec<u8>>), NodeError> {
    let mut out = Vec::new();
    let mut meta = None;
    if path.is_dir() {
        // Regular files only (a FIFO or a device named like an image would block the read
        // forever), symlinks followed, each directory entered once (symlink loops).
        fn walk(
            base: &Path,
            dir: &Path,
            out: &mut Vec<String>,
            seen: &mut std::collections::BTreeSet<(u64, u64)>,
        ) -> std::io::Result<()> {
            use std::os::unix::fs::MetadataExt;
            let dm = std::fs::metadata(dir)?;
            if !seen.insert((dm.dev(), dm.ino())) {
                return Ok(());
            }
            for e in std::fs::read_dir(dir)? {
                let p = e?.path();
                let Ok(m) = std::fs::metadata(&p) else {
                    continue;
                };
                if m.is_dir() {
                    walk(base, &p, out, seen)?;
                } else if m.is_file()
                    && let Ok(rel) = p.strip_prefix(base)
                {
                    out.push(rel.to_string_lossy().replace('\\', "/"));
                }
            }
            Ok(())
        }
        let mut names = Vec::new();
        walk(path, path, &mut names, &mut Default::default())
            .map_err(NodeError::io("listing", path))?;
        names.sort();
        for n in names {
            let p = path.join(&n);
            let len = std::fs::metadata(&p).map_or(0, |m| m.len());
            if len > MAX_ENTRY_BYTES && (n == "dataset.json" || is_image(&n)) {
                return Err(NodeError::msg(format!(
                    "{}: {len} bytes (at most {MAX_ENTRY_BYTES} per image)",
                    p.display()
                )));
            }
            if n == "dataset.json" {
                meta = Some(std::fs::read(&p).map_err(NodeError::io("reading", &p))?);
            } else if is_image(&n) {
                out.push((n, std::fs::read(&p).map_err(NodeError::io("reading", &p))?));
            }
        }
    } else {
        let f = std::fs::File::open(path).map_err(NodeError::io("opening", path))?;
        let mut z = zip::ZipArchive::new(f)
            .map_err(|e| NodeError::msg(format!("{}: not a zip archive: {e}", path.display())))?;
        let mut names: Vec<String> = (0..z.len())
            .filter_map(|i| {
                z.by_index(i)
                    .ok()
                    .and_then(|e| e.name().ok().map(|n| n.to_string()))
            })
            .collect();
        names.sort();
        for n in names {
            if n.ends_with('/') {
                continue;
            }
            let mut e = z
                .by_name(&n)
                .map_err(|e| NodeError::msg(format!("{}: {n}: {e}", path.display())))?;
            // The declared size is input: capped, and never trusted for an allocation.
            if e.size() > MAX_ENTRY_BYTES {
                return Err(NodeError::msg(format!(
                    "{}: {n}: declares {} bytes uncompressed (at most {MAX_ENTRY_BYTES} per image)",
                    path.display(),
                    e.size()
                )));
            }
            let mut bytes = Vec::new();
            (&mut e)
                .take(MAX_ENTRY_BYTES + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| NodeError::msg(format!("{}: {n}: {e}", path.display())))?;
            if bytes.len() as u64 > MAX_ENTRY_BYTES {
                return Err(NodeError::msg(format!(
                    "{}: {n}: more than {MAX_ENTRY_BYTES} bytes uncompressed",
                    path.display()
                )));
            }
            if n == "dataset.json" {
                meta = Some(bytes);
            } else if is_image(&n) {
                out.push((n, bytes));
            } else if !n.starts_with("__MACOSX") && !n.ends_with(".DS_Store") {
                return Err(NodeError::msg(format!(
                    "{}: entry `{n}` is not an image (.png, .jpg, .jpeg) nor dataset.json",
                    path.display()
                )));
            }
        }
    }
    Ok((out, meta))
}

/// Load a folder or zip of images.
///
/// # Errors
/// Unreadable archives or images (naming the entry), mixed sizes without `resolution`, labels
/// that do not cover every image.
pub fn load(
    path: &Path,
    resolution: Option<usize>,
    filter: Filter,
    use_labels: bool,
    channels: Option<u32>,
) -> Result<ImageSet, NodeError> {
    let (items, meta) = entries(path)?;
    if items.is_empty() {
        return Err(NodeError::msg(format!(
            "{}: no .png/.jpg/.jpeg images",
            path.display()
        )));
    }
    let decoded: Vec<Decoded> = items
        .par_iter()
        .map(|(n, b)| decode(b, &format!("{}: {n}", path.display())))
        .collect::<Result<_, _>>()?;
    let c = match channels {
        Some(c) => c as usize,
        None => decoded.iter().map(|d| d.c).max().unwrap_or(3),
    };
    let (h, w) = match resolution {
        Some(r) => (r, r),
        None => {
            let (h, w) = (decoded[0].h, decoded[0].w);
            if let Some((i, d)) = decoded
                .iter()
                .enumerate()
                .find(|(_, d)| (d.h, d.w) != (h, w))
            {
                return Err(NodeError::msg(format!(
                    "{}: `{}` is {}×{} but `{}` is {h}×{w}; set `resolution` to crop and resize",
                    path.display(),
                    items[i].0,
                    d.w,
                    d.h,
                    items[0].0
                )));
            }
            (h, w)
        }
    };
    // The output's size in checked arithmetic before it is allocated.
    cedm_engine::limits::elements(&[decoded.len(), c, h, w], &path.display().to_string())
        .map_err(NodeError::msg)?;
    let pixels: Vec<u8> = decoded
        .par_iter()
        .map(|d| {
            let px = match resolution {
                Some(r) => crop_resize(d, r, filter),
                None => d.chw.clone(),
            };
            match (d.c, c) {
                (1, 3) => [px.clone(), px.clone(), px].concat(),
                (3, 1) => {
                    // ITU-R 601-2 luma, as PIL's convert("L").
                    let hw = h * w;
                    (0..hw)
                        .map(|i| {
                            let v = (f32::from(px[i]) * 299.0
                                + f32::from(px[hw + i]) * 587.0
                                + f32::from(px[2 * hw + i]) * 114.0)
                                / 1000.0;
                            v.round().clamp(0.0, 255.0) as u8
                        })
                        .collect()
                }
                _ => px,
            }
        })
        .flatten_iter()
        .collect();
    let labels = match (use_labels, meta) {
        (true, Some(bytes)) => {
            let v: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|e| NodeError::msg(format!("{}: dataset.json: {e}", path.display())))?;
            match v.get("labels") {
                Some(serde_json::Value::Array(pairs)) => {
                    let mut map = std::collections::HashMap::new();
                    for p in pairs {
                        if let (Some(n), Some(l)) = (
                            p.get(0).and_then(|x| x.as_str()),
                            p.get(1).and_then(|x| x.as_i64()),
                        ) {
                            map.insert(n.to_string(), l);
                        }
                    }
                    let ls: Result<Vec<i64>, NodeError> = items
                        .iter()
                        .map(|(n, _)| {
                            map.get(n).copied().ok_or_else(|| {
                                NodeError::msg(format!(
                                    "{}: dataset.json has no label for `{n}`",
                                    path.display()
                                ))
                            })
                        })
                        .collect();
                    Some(ls?)
                }
                _ => None,
            }
        }
        _ => None,
    };
    Ok(ImageSet {
        n: items.len(),
        c,
        h,
        w,
        pixels,
        labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn png(w: u32, h: u32, rgb: bool, v: u8) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        if rgb {
            image::RgbImage::from_fn(w, h, |x, y| image::Rgb([v, (x * 10) as u8, (y * 10) as u8]))
                .write_to(&mut out, image::ImageFormat::Png)
                .unwrap();
        } else {
            image::GrayImage::from_fn(w, h, |x, _| image::Luma([v.wrapping_add(x as u8)]))
                .write_to(&mut out, image::ImageFormat::Png)
                .unwrap();
        }
        out.into_inner()
    }

    fn write_zip(path: &Path, entries: &[(&str, Vec<u8>)]) {
        let f = std::fs::File::create(path).unwrap();
        let mut z = zip::ZipWriter::new(f);
        for (n, b) in entries {
            z.start_file(
                *n,
                zip::write::SimpleFileOptions::default()
                    .compression_method(zip::CompressionMethod::Stored),
            )
            .unwrap();
            z.write_all(b).unwrap();
        }
        z.finish().unwrap();
    }

    #[test]
    fn edm_zip_with_labels() {
        let dir = tempfile::tempdir().unwrap();
        let zp = dir.path().join("ds.zip");
        let json =
            br#"{"labels": [["00000/img00000001.png", 7], ["00000/img00000000.png", 3]]}"#.to_vec();
        write_zip(
            &zp,
            &[
                ("00000/img00000001.png", png(8, 8, true, 20)),
                ("00000/img00000000.png", png(8, 8, true, 10)),
                ("dataset.json", json),
            ],
        );
        let s = load(&zp, None, Filter::Lanczos, true, None).unwrap();
        assert_eq!((s.n, s.c, s.h, s.w), (2, 3, 8, 8));
        assert_eq!(s.labels, Some(vec![3, 7]), "labels follow sorted names");
        assert_eq!(s.pixels[0], 10);
    }

    #[test]
    fn folder_crop_resize_and_grey() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.png"), png(12, 8, false, 50)).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/b.png"), png(8, 12, false, 60)).unwrap();
        let s = load(dir.path(), Some(4), Filter::Bicubic, true, None).unwrap();
        assert_eq!((s.n, s.c, s.h, s.w), (2, 1, 4, 4));
        assert!(s.labels.is_none());
        let rgb = load(dir.path(), Some(4), Filter::Bilinear, true, Some(3)).unwrap();
        assert_eq!(rgb.c, 3);
        let e = load(dir.path(), None, Filter::Lanczos, true, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("set `resolution`"), "{e}");
    }

    #[test]
    fn bad_inputs_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let zp = dir.path().join("bad.zip");
        write_zip(
            &zp,
            &[
                ("00000/img00000000.png", png(4, 4, true, 1)),
                ("notes.txt", b"hello".to_vec()),
            ],
        );
        let e = load(&zp, None, Filter::Lanczos, true, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bad.zip") && e.contains("notes.txt") && e.contains("not an image"),
            "{e}"
        );

        let zp2 = dir.path().join("corrupt.zip");
        write_zip(&zp2, &[("00000/img00000000.png", b"not a png".to_vec())]);
        let e = load(&zp2, None, Filter::Lanczos, true, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("corrupt.zip") && e.contains("img00000000.png"),
            "{e}"
        );

        let e = load(
            &dir.path().join("missing.zip"),
            None,
            Filter::Lanczos,
            true,
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("missing.zip"), "{e}");
    }
}
