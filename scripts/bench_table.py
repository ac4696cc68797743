#!/usr/bin/env python3
"""Run cedm's benchmarks side by side with their references and write docs/performance.md's tables.

    python3 scripts/bench_table.py --python /path/to/python-with-torch      # run all, write tables
    python3 scripts/bench_table.py --python PY --only edm-quickstart,knn   # rerun some
    python3 scripts/bench_table.py --render                                # tables from the saved JSON

Each benchmark is one `cedm bench ... --json` (cedm and the reference script run one after the
other on the same input). Results are saved to docs/bench/results.json (one entry per benchmark,
replaced when rerun), and the tables between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`
markers in docs/performance.md are rewritten from that file. Nothing here is typed by hand; the
ratios are this machine's (its CPU, threads and GEMM providers are recorded with every entry).
`--repeat N` runs a benchmark N times and keeps the run with the median ratio (this VM's
timings vary by ±20% from run to run). `--machine NAME` keeps a second machine's results apart
(docs/bench/results-NAME.json, tables between `<!-- bench:NAME:TABLE -->` markers), so Intel and
AMD figures stand side by side instead of replacing each other.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "docs", "bench", "results.json")
DOC = os.path.join(ROOT, "docs", "performance.md")

OFF = {"CEDM_BLAS": "off", "CEDM_DNNL": "off"}
NOBLAS = {"CEDM_BLAS": "off"}  # what the README's path has: oneDNN from fetch_assets.sh, no system BLAS
# name -> (cedm bench arguments, extra environment, table it belongs to, row label)
BENCHES = {
    "edm-quickstart": (["edm", "--preset", "quickstart", "--batch", "64", "--steps", "20", "--profile"], {}, "training", "EDM step, quickstart SongUNet (16 px grey, 0.18 M params), batch 64"),
    "edm-small": (["edm", "--preset", "small", "--batch", "64", "--steps", "10", "--profile"], {}, "training", "EDM step, `small` SongUNet (32 px RGB, 1.26 M params), batch 64"),
    "edm-cifar": (["edm", "--preset", "cifar", "--batch", "16", "--steps", "4", "--warmup", "1", "--profile"], {}, "training", "EDM step, `cifar` SongUNet (EDM's CIFAR-10 DDPM++, 55.7 M params), batch 16"),
    "edm-cifar-gemm": (["edm", "--preset", "cifar", "--batch", "16", "--steps", "4", "--warmup", "1"], {"CEDM_CONV_LARGE": "gemm"}, "training", "EDM step, `cifar` SongUNet, batch 16 — kernels of 65 536 weights or more on im2col + GEMM (`CEDM_CONV_LARGE=gemm`, the Intel AVX-512 split)"),
    "temi": (["temi"], {}, "training", "TEMI epoch: 50 heads 1280→512→256→100 (TEMI nlayers 2), 60 000 items, batch 512, student + teacher, AdamW, EMA"),
    "sample": (["sample", "--preset", "quickstart", "--images", "256", "--batch", "256", "--steps", "18"], {}, "training", "Heun sampling, 18 steps (35 evaluations), quickstart SongUNet, 256 images"),
    "features": (["features"], {}, "features", "MobileNetV2 features, 96 px, batch 32"),
    "features-noblas": (["features"], NOBLAS, "features", "MobileNetV2 features, 96 px, batch 32 — `CEDM_BLAS=off` (oneDNN, no system BLAS)"),
    "features-off": (["features"], OFF, "features", "MobileNetV2 features, 96 px, batch 32 — `CEDM_BLAS=off CEDM_DNNL=off`"),
    "inception": (["inception"], {}, "features", "FID Inception, 299 px, batch 32"),
    "inception-noblas": (["inception"], NOBLAS, "features", "FID Inception, 299 px, batch 32 — `CEDM_BLAS=off` (oneDNN, no system BLAS)"),
    "inception-off": (["inception"], OFF, "features", "FID Inception, 299 px, batch 32 — `CEDM_BLAS=off CEDM_DNNL=off`"),
    "knn": (["knn"], {}, "features", "exact kNN, 60 000 × 1280, k = 50"),
    "knn-noblas": (["knn"], NOBLAS, "features", "exact kNN, 60 000 × 1280, k = 50 — `CEDM_BLAS=off` (oneDNN, no system BLAS)"),
    "knn-off": (["knn"], OFF, "features", "exact kNN, 60 000 × 1280, k = 50 — `CEDM_BLAS=off CEDM_DNNL=off`"),
    "kmeans": (["kmeans"], {}, "features", "k-means k = 100, 60 000 × 1280 Gaussian"),
    "kmeans-noblas": (["kmeans"], NOBLAS, "features", "k-means k = 100, 60 000 × 1280 Gaussian — `CEDM_BLAS=off` (oneDNN, no system BLAS)"),
    "kmeans-off": (["kmeans"], OFF, "features", "k-means k = 100, 60 000 × 1280 Gaussian — `CEDM_BLAS=off CEDM_DNNL=off`"),
    "frechet": (["frechet"], {}, "features", "Fréchet distance, 2048-d"),
    "encoder-dinov2": (["encoder", "--model", "dinov2_vitl14", "--images", "16", "--batch", "8"], {}, "features", "DINOv2 ViT-L/14 features (FD_DINOv2's encoder), 224 px, batch 8, random weights (timm)"),
    "encoder-dino": (["encoder", "--model", "dino_vitb16", "--images", "32", "--batch", "16"], {}, "features", "DINO ViT-B/16 features (the paper's clustering backbone), 224 px, batch 16, random weights (timm)"),
    "encoder-clip": (["encoder", "--model", "clip:ViT-B-32", "--images", "64", "--batch", "32"], {}, "features", "OpenCLIP ViT-B/32 image features (FD_CLIP), 224 px, batch 32, random weights (open_clip)"),
}
PROFILES = ["edm-quickstart", "edm-small", "edm-cifar"]


def run(cedm, python, name, repeat):
    args, env, _, _ = BENCHES[name]
    runs = []
    for _ in range(repeat):
        cmd = [cedm, "bench", *args, "--json"] + (["--python", python] if python else [])
        print("+", " ".join(f"{k}={v}" for k, v in env.items()), " ".join(cmd), file=sys.stderr, flush=True)
        out = subprocess.run(cmd, env={**os.environ, **env}, cwd=ROOT, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"{name} failed ({out.returncode}):\n{out.stderr[-4000:]}")
        r = json.loads(out.stdout[out.stdout.index("{"):])
        r["env"] = env
        runs.append(r)
        print(f"  ratio {ratio(r)}", file=sys.stderr, flush=True)
    with_ref = [r for r in runs if r.get("reference")]
    if not with_ref:
        return runs[0]
    med = statistics.median_low([speed(r) for r in with_ref])
    best = next(r for r in with_ref if speed(r) == med)
    best["ratios_seen"] = sorted(round(speed(r), 2) for r in with_ref)
    return best


def speed(r):
    return r["reference"]["seconds"] / r["ours"]["seconds"]


def ratio(r):
    return f"{speed(r):.2f}×" if r.get("reference") else "n/a"


def rss(r):
    a = r["ours"].get("peak_rss_mib")
    b = (r.get("reference") or {}).get("peak_rss_mib")
    if a is None:
        return "—"
    return f"{a:,.0f} / {b:,.0f} MiB" if b is not None else f"{a:,.0f} MiB / —"


def num(x):
    if x >= 100:
        return f"{x:,.0f}".replace(",", " ")
    return f"{x:.3g}" if x < 10 else f"{x:.1f}"


def measure(m, unit):
    if m.get("rate") is not None:
        return f"{num(m['rate'])} {unit}"
    s = m["seconds"]
    return f"{s / 60:.1f} min" if s >= 120 else f"{s:.1f} s"


def table_rows(results, table):
    rows = ["| benchmark | cedm | reference | ratio (cedm speed / reference speed) | peak RSS cedm / reference |", "|---|---|---|---|---|"]
    for name, (_, _, t, label) in BENCHES.items():
        r = results.get(name)
        if t != table or r is None:
            continue
        ref = r.get("reference")
        seen = r.get("ratios_seen")
        spread = f" (runs: {', '.join(f'{x:.2f}' for x in seen)})" if seen and len(seen) > 1 else ""
        rows.append(
            f"| {label} | {measure(r['ours'], r['unit'])} | "
            + (f"{measure(ref, r['unit'])} ({ref['implementation']})" if ref else "—")
            + f" | **{ratio(r)}**{spread} | {rss(r)} |"
        )
    notes = [f"- {BENCHES[n][3]}: {'; '.join(r['notes'])}" for n, r in results.items() if n in BENCHES and BENCHES[n][2] == table and r.get("notes")]
    return rows + ([""] + notes if notes else [])


def profile_rows(r):
    rows = []
    sides = {s: [p for p in r.get("profile", []) if p["side"] == s] for s in ("cedm", "reference")}
    for side, ps in sides.items():
        if not ps:
            continue
        total = sum(p["ms_per_step"] for p in ps)
        rows.append(f"| **{side}** ({r['ours' if side == 'cedm' else 'reference']['implementation']}) | **{total:.1f}** | | |")
        for p in sorted(ps, key=lambda p: -p["ms_per_step"]):
            calls = f"{p['calls_per_step']:.0f}" if p.get("calls_per_step") is not None else ""
            rows.append(f"| {p['op']} | {p['ms_per_step']:.2f} | {100 * p['ms_per_step'] / max(total, 1e-12):.0f}% | {calls} |")
    return ["| operation | ms per step | share | calls per step |", "|---|---|---|---|"] + rows


def host_line(results):
    # The machine as the default rows see it (the `-off` rows run without oneDNN and OpenBLAS).
    hosts = {json.dumps(r.get("host"), sort_keys=True) for r in results.values() if r.get("host") and not r.get("env")}
    lines = []
    for h in sorted(hosts):
        h = json.loads(h)
        onednn = "found" if h["onednn"].startswith("oneDNN") else "not found"
        lines.append(f"- {h['cpu']}, {h['threads']} threads; BLAS: {h['blas']}; oneDNN: {onednn}")
    return lines


def render(results, prefix=""):
    with open(DOC) as f:
        doc = f.read()
    blocks = {"host": host_line(results), "training": table_rows(results, "training"), "features": table_rows(results, "features")}
    for n in PROFILES:
        if n in results:
            blocks[f"profile-{n}"] = profile_rows(results[n])
    for name, lines in blocks.items():
        name = prefix + name
        pat = re.compile(rf"(<!-- bench:{re.escape(name)} -->\n).*?(<!-- /bench:{re.escape(name)} -->)", re.S)
        if not pat.search(doc):
            print(f"note: docs/performance.md has no bench:{name} markers", file=sys.stderr)
            continue
        doc = pat.sub(lambda m: m.group(1) + "\n".join(lines) + "\n" + m.group(2), doc)
    with open(DOC, "w") as f:
        f.write(doc)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cedm", default=os.path.join(ROOT, "target", "debug", "cedm"), help="the cedm binary (default: the dev build `cargo run` makes)")
    ap.add_argument("--python", help="a Python with torch / scikit-learn / scipy for the references")
    ap.add_argument("--only", help="comma-separated benchmark names: " + ", ".join(BENCHES))
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--render", action="store_true", help="only rewrite the tables from docs/bench/results.json")
    ap.add_argument("--machine", help="another machine's tables: docs/bench/results-NAME.json and `bench:NAME:…` markers")
    a = ap.parse_args()
    global RESULTS
    prefix = ""
    if a.machine:
        if not re.fullmatch(r"[a-z0-9-]+", a.machine):
            sys.exit("--machine: lower-case letters, digits and '-' only")
        RESULTS = os.path.join(ROOT, "docs", "bench", f"results-{a.machine}.json")
        prefix = f"{a.machine}:"
    results = {}
    if os.path.exists(RESULTS):
        with open(RESULTS) as f:
            results = json.load(f)
    if not a.render:
        names = a.only.split(",") if a.only else list(BENCHES)
        for n in names:
            if n not in BENCHES:
                sys.exit(f"unknown benchmark `{n}` (one of: {', '.join(BENCHES)})")
        for n in names:
            results[n] = run(a.cedm, a.python, n, a.repeat)
            os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
            with open(RESULTS, "w") as f:
                json.dump(results, f, indent=1, ensure_ascii=False)
                f.write("\n")
    render(results, prefix)


if __name__ == "__main__":
    main()
