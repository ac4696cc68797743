//! `cedm report` on a small real run (features → kNN → TEMI over C → EDM → samples → FID), opened
//! in headless Chromium: every image loads and the plots show the expected points. Without
//! Chromium (`.ci/run` installs Debian's), the browser half says so on stderr and is skipped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{Dir, stderr, stdout};

fn assets() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets");
    assert!(
        p.join("weights/inception-2015-12-05.safetensors").exists(),
        "assets missing: run scripts/fetch_assets.sh"
    );
    p
}

fn experiment(a: &Path) -> String {
    format!(
        "name: tiny
sweep:
  C: [4, 8]
  L: [0.064, 0.128]
nodes:
  train:
    kind: data/idx
    params: {{images: {a}/fashion-mnist/train-images-idx3-ubyte.gz, labels: {a}/fashion-mnist/train-labels-idx1-ubyte.gz, limit: 200}}
  train16:
    kind: data/idx
    params: {{images: {a}/fashion-mnist/train-images-idx3-ubyte.gz, labels: {a}/fashion-mnist/train-labels-idx1-ubyte.gz, limit: 200, resolution: 16}}
  feats:
    kind: features/mobilenet_v2
    inputs: {{images: train}}
    params: {{weights: {a}/weights/mobilenet_v2-b0353104.pth, resolution: 32}}
  knn:
    kind: features/knn
    inputs: {{features: feats}}
    params: {{k: 10}}
  temi:
    kind: cluster/temi
    inputs: {{features: feats, knn: knn}}
    params: {{clusters: \"${{C}}\", heads: 1, epochs: 2, warmup_epochs: 1, batch_size: 64, knn: 10}}
  scores:
    kind: cluster/metrics
    inputs: {{clusters: temi, truth: train}}
  edm:
    kind: edm/train
    inputs: {{images: train16, labels: temi}}
    params: &edm {{model: small, model_channels: 8, channel_mult: [1, 2], num_blocks: 1, attn_resolutions: [], dropout: 0.0,
                  augment_p: 0.0, duration_kimg: 0.128, batch_size: 32, lr: 0.002, lr_rampup_kimg: 0.01, log_every_kimg: 0.032}}
  edm_uncond:
    kind: edm/train
    inputs: {{images: train16}}
    params: {{model: small, model_channels: 8, channel_mult: [1, 2], num_blocks: 1, attn_resolutions: [], dropout: 0.0,
             augment_p: 0.0, duration_kimg: \"${{L}}\", batch_size: 32, lr: 0.002, lr_rampup_kimg: 0.01, log_every_kimg: 0.032}}
  sample:
    kind: edm/sample
    inputs: {{network: edm}}
    params: &s {{count: 12, steps: 4, grid_rows: 3, grid_cols: 4}}
  sample_uncond:
    kind: edm/sample
    inputs: {{network: edm_uncond}}
    params: *s
  edm_gt:
    kind: edm/train
    inputs: {{images: train16, labels: train16}}
    params: *edm
  mapping:
    kind: cluster/mapping
    inputs: {{clusters: temi, truth: train}}
  fig2:
    kind: figures/same_noise
    inputs: {{network: edm, reference: edm_gt, mapping: mapping}}
    params: {{classes: 10, seeds: 2, steps: 4}}
  fig3:
    kind: figures/granularity
    inputs: {{uncond: edm_uncond, networks: edm}}
    params: {{seeds: 3, steps: 4}}
  fig5:
    kind: figures/gallery
    inputs: {{clusters: temi, images: train}}
    params: {{clusters: 3, per_cluster: 5}}
  sample_feats:
    kind: features/mobilenet_v2
    inputs: {{images: sample}}
    params: {{weights: {a}/weights/mobilenet_v2-b0353104.pth, resolution: 32}}
  fig6:
    kind: figures/confidence
    inputs: {{features: sample_feats, head: temi, samples: sample, uncond: sample_uncond, reference: feats}}
    params: {{show: 4}}
  fid_ref:
    kind: metrics/fid_ref
    inputs: {{images: train16}}
    params: {{weights: {a}/weights/inception-2015-12-05.safetensors}}
  fid:
    kind: metrics/fid
    inputs: {{samples: sample, ref: fid_ref}}
    params: {{weights: {a}/weights/inception-2015-12-05.safetensors}}
  fid_uncond:
    kind: metrics/fid
    inputs: {{samples: sample_uncond, ref: fid_ref}}
    params: {{weights: {a}/weights/inception-2015-12-05.safetensors}}
  fd_mnv2:
    kind: metrics/fd
    inputs: {{samples: sample_feats, reference: feats}}
    params: {{bootstrap: 20}}
",
        a = a.display()
    )
}

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|c| {
            let o = Command::new("sh")
                .args(["-c", &format!("command -v {c}")])
                .output()
                .ok()?;
            o.status
                .success()
                .then(|| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        })
}

fn headless(browser: &Path, profile: &Path) -> Command {
    let mut c = Command::new(browser);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--allow-file-access-from-files",
        "--virtual-time-budget=10000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    c
}

fn attr(dom: &str, name: &str) -> Option<String> {
    let i = dom.find(&format!("{name}=\""))? + name.len() + 2;
    Some(dom[i..].split('"').next()?.to_string())
}

#[test]
fn report_of_a_small_run_renders_in_a_browser() {
    let a = assets();
    let d = Dir::new();
    d.write("exp.yaml", &experiment(&a));
    let o = d.run(&["run", "exp.yaml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = d.path().join("rep");
    let o = d.run(&["report", "exp.yaml", "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let index = out.join("index.html");
    assert_eq!(stdout(&o).trim(), index.display().to_string());
    // The results tables as Markdown (what docs/results.md includes), from the cache alone:
    // one clustering row per C with its scores, the summary and its reading.
    let md = d.run(&["report", "exp.yaml", "--format", "markdown"]);
    assert!(md.status.success(), "{}", stderr(&md));
    let md = stdout(&md);
    assert!(
        md.starts_with("<!-- generated by `cedm report exp.yaml --format markdown`"),
        "{md}"
    );
    assert!(
        md.contains("| node | method | C | ACC | NMI | ANMI | ARI | C_u | KL(U‖p) | time |"),
        "{md}"
    );
    for c in [4, 8] {
        let row = md
            .lines()
            .find(|l| l.starts_with(&format!("| temi[C={c}] | TEMI | {c} | ")))
            .unwrap_or_else(|| panic!("temi[C={c}] in\n{md}"));
        // ACC, NMI, ANMI, ARI from cluster/metrics: numbers, not blanks.
        let cells: Vec<&str> = row.split(" | ").collect();
        assert!(
            cells[3..7].iter().all(|c| c.parse::<f64>().is_ok()),
            "{row}"
        );
    }
    assert!(
        md.contains("**Sample quality**") && md.contains("| metric node |"),
        "{md}"
    );
    assert!(md.contains("FD_MobileNetV2: lowest for"), "{md}");
    let html = std::fs::read_to_string(&index).unwrap();
    // Static content: the FID plot has one point per C for TEMI and the unconditional baseline;
    // keys are listed; nothing is fetched from the network.
    assert_eq!(
        html.matches("data-series=\"TEMI\"").count(),
        2 + 2,
        "FID and FD_MobileNetV2 against C: one point per C each"
    );
    // metrics/fd: its own figure, named by its encoder, bars from the bootstrap interval of
    // the single run; the summary table carries the interval.
    assert!(html.contains("FD_MobileNetV2 against the number of clusters C"));
    assert!(html.contains("half its bootstrap interval"));
    assert!(html.contains("bootstrap CI"));
    assert!(html.contains("data-series=\"unconditional (n=1)\""));
    // Seed Fig. 7: the unconditional EDM at two training lengths (one trajectory: the longer
    // resumed from the shorter) in a figure against Mimg; the C plot shows the longest only.
    assert!(html.contains("against training length"));
    assert_eq!(
        html.matches("data-series=\"unconditional\"").count(),
        2,
        "FID against Mimg: one point per length"
    );
    assert!(
        !html.contains("http://")
            || html.matches("http://").count()
                == html.matches("http://www.w3.org/2000/svg").count(),
        "external URL in the page"
    );
    assert!(!html.contains("https://"));
    assert!(html.contains("cache keys"));
    let imgs = html.matches("<img ").count();
    assert!(imgs >= 2 + 2 + 2, "{imgs} images");
    // The paper's figures: Fig. 2 and 5 per C, Fig. 3/4 per training length of the
    // unconditional EDM (its `uncond`), Fig. 6 per (C, length), each with its figure.png (Fig. 6
    // with its histogram too) and its numbers in the caption.
    assert!(html.contains("The paper&#39;s figures") || html.contains("The paper's figures"));
    assert_eq!(html.matches("Seed Fig. 2 (").count(), 2);
    assert!(html.contains("agrees with"));
    assert_eq!(html.matches("Seed Fig. 3/4 (").count(), 2);
    assert!(
        html.contains("C=4 ") && html.contains("C=8 "),
        "granularity labelled by C"
    );
    assert_eq!(html.matches("Seed Fig. 5 (").count(), 2);
    assert_eq!(html.matches("Seed Fig. 6 (").count(), 4);
    assert!(html.contains("Mean MSP (T = 0.1) of the 12 samples"));
    assert_eq!(html.matches("class=\"fig\"").count(), 2 + 2 + 2 + 4 * 2);
    let points = html.matches("class=\"pt\"").count();

    // One colour per label source across figures (the FID and FD plots against C, Fig. 7).
    for source in ["TEMI", "unconditional"] {
        let fills: std::collections::BTreeSet<&str> = html
            .match_indices("<circle class=\"pt\" data-series=\"")
            .filter_map(|(i, m)| {
                let rest = &html[i + m.len()..];
                let name = &rest[..rest.find('"')?];
                (name.split(" (n=").next() == Some(source)).then(|| {
                    let f = &rest[rest.find("fill=\"")? + 6..];
                    Some(&f[..f.find('"')?])
                })?
            })
            .collect();
        assert_eq!(fills.len(), 1, "{source} is drawn in {fills:?}");
    }
    // Sample grids are labelled: per row the label id, its images and majority class (named:
    // Fashion-MNIST), and how many of the model's labels are shown.
    assert!(
        html.contains("3 of 4 labels shown"),
        "grid of C=4 not labelled"
    );
    assert!(html.contains("<th>majority class</th>"));
    let fmnist = cedm_nodes::datasets::FASHION_MNIST_CLASSES;
    assert!(
        fmnist.iter().any(|c| html.contains(&format!("<td>{c} ("))),
        "no class name in the grid tables"
    );
    assert!(html.contains("unconditional: 3 rows of seeds"));
    // docs/artifacts.md names every output file this run's kinds wrote.
    let ls = d.run(&["cache", "ls", "exp.yaml", "--json"]);
    let recs: serde_json::Value = serde_json::from_str(&stdout(&ls)).unwrap();
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/artifacts.md"),
    )
    .unwrap();
    for r in recs.as_array().unwrap() {
        for name in r["outputs"].as_object().unwrap().keys() {
            assert!(
                doc.contains(&format!("`{name}`")),
                "docs/artifacts.md does not describe `{name}` ({})",
                r["kind"]
            );
        }
    }
    // `cedm exp show`: one row per sampled model from the cache, metrics as columns.
    let o = d.run(&["exp", "show", "exp.yaml", "--format", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let rows = rows.as_array().unwrap();
    let temi: Vec<&serde_json::Value> = rows.iter().filter(|r| r["model"] == "TEMI").collect();
    assert_eq!(temi.len(), 2, "{rows:?}");
    for r in &temi {
        assert!(r["FD_MobileNetV2"].as_f64().is_some(), "{r}");
        assert!(r["FD_MobileNetV2 ±"].as_f64().is_some(), "{r}");
        assert!(r["ACC"].as_f64().is_some(), "{r}");
    }
    // The unconditional model's FID is one run without an interval: its spread is n/a.
    let uncond = rows
        .iter()
        .find(|r| r["model"] == "unconditional" && r["FID"].is_number())
        .expect("unconditional row");
    assert!(uncond["FID ±"].is_null(), "{uncond}");
    let o = d.run(&[
        "exp",
        "show",
        "exp.yaml",
        "--where",
        "model=TEMI",
        "--sort=-C",
        "--format",
        "csv",
    ]);
    let csv = stdout(&o);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with("model,C,"), "{csv}");
    assert!(
        lines[1].starts_with("TEMI,8,") && lines[2].starts_with("TEMI,4,"),
        "{csv}"
    );
    let table = stdout(&d.run(&["exp", "show", "exp.yaml", "--where", "model=unconditional"]));
    assert!(table.contains("n/a"), "{table}");
    assert!(!table.contains("0.0000"), "{table}");
    let o = d.run(&["exp", "show", "exp.yaml", "--sort", "nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("the columns are"), "{}", stderr(&o));
    // `cedm exp diff`: why two sweep points' keys differ, down the inputs.
    let o = d.run(&["exp", "diff", "exp.yaml", "fid[C=4]", "fid[C=8]"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let diff = stdout(&o);
    assert!(diff.contains("param clusters: 4 → 8"), "{diff}");
    assert!(
        diff.contains("input samples: sample[C=4] → sample[C=8], which differ in"),
        "{diff}"
    );
    let same = stdout(&d.run(&["exp", "diff", "exp.yaml", "feats", "feats"]));
    assert!(same.contains("the same spec"), "{same}");

    let Some(browser) = chromium() else {
        let _ = writeln!(
            std::io::stderr(),
            "\n*** REPORT BROWSER CHECK SKIPPED: no chromium on PATH (apt-get install chromium; .ci/run does). ***\n"
        );
        return;
    };
    let profile = d.path().join("chrome-profile");
    let url = format!("file://{}", index.display());
    let dom = headless(&browser, &profile)
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .expect("run chromium");
    let dom_text = String::from_utf8_lossy(&dom.stdout).to_string();
    assert_eq!(
        attr(&dom_text, "data-ready").as_deref(),
        Some("1"),
        "the page's load handler did not run: {}",
        String::from_utf8_lossy(&dom.stderr)
    );
    assert_eq!(
        attr(&dom_text, "data-broken").as_deref(),
        Some("0"),
        "broken images"
    );
    assert_eq!(
        attr(&dom_text, "data-images").and_then(|v| v.parse::<usize>().ok()),
        Some(imgs)
    );
    assert_eq!(
        attr(&dom_text, "data-points").and_then(|v| v.parse::<usize>().ok()),
        Some(points)
    );
    let shot = d.path().join("shot.png");
    let s = headless(&browser, &profile)
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1280,2400")
        .arg(&url)
        .output()
        .expect("run chromium");
    assert!(
        shot.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&s.stderr)
    );
    let img = image::open(&shot)
        .expect("screenshot is an image")
        .to_rgb8();
    // Not a blank page: many distinct colours (plots, grids, text).
    let mut colours = std::collections::HashSet::new();
    for p in img.pixels().step_by(7) {
        colours.insert(p.0);
    }
    assert!(
        colours.len() > 50,
        "screenshot looks blank ({} colours)",
        colours.len()
    );
}
