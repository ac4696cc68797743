#!/usr/bin/env bash
# Copy the quickstart's paper figures (figures/* nodes) from the cache into docs/img/, the
# images docs/results.md shows. Run after `cargo run -- run experiments/quickstart.yaml`; it
# computes nothing and fails if a figure is not cached.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cedm="${CEDM:-cargo run -q --}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
copy() { # node label, output file, destination name
  $cedm cache export --experiment experiments/quickstart.yaml "$1" "$tmp/$3" >/dev/null
  cp "$tmp/$3/$2" "docs/img/$3.png"
  echo "docs/img/$3.png ← $1 $2"
}
copy "fig_same_noise[C=10]" figure.png quickstart-fig2-same-noise
copy fig_granularity figure.png quickstart-fig3-granularity
copy "fig_gallery[C=10]" figure.png quickstart-fig5-gallery
copy "fig_confidence[C=10]" figure.png quickstart-fig6-confidence
copy "fig_confidence[C=10]" histogram.png quickstart-fig6-histogram
