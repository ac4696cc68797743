#!/usr/bin/env bash
# Benchmark (not a test): wall time of `cedm status` and of a no-op `cedm run` on a cached
# 3-point sweep of 20 nodes, and — when DVC is installed (`pip install dvc`) — of `dvc status`
# on the equivalent dvc.yaml. Needs hyperfine (apt-get install hyperfine).
#
#   benches/engine_noop.sh [path/to/cedm]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cedm="${1:-$root/target/release/cedm}"
[ -x "$cedm" ] || cedm="$root/target/debug/cedm"
[ -x "$cedm" ] || { echo "build cedm first (cargo build --release)"; exit 1; }
command -v hyperfine >/dev/null || { echo "needs hyperfine (apt-get install hyperfine)"; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"

cat > exp.yaml <<'YAML'
name: noop
sweep:
  C: [1, 2, 3]
nodes:
  base: {kind: toy/value, params: {value: 1}}
  other: {kind: toy/add, inputs: {a: base}, params: {k: 7}}
  s1: {kind: toy/add, inputs: {a: base}, params: {k: "${C}"}}
  s2: {kind: toy/add, inputs: {a: s1, b: other}}
  s3: {kind: toy/add, inputs: {a: s2}, params: {k: 1}}
  s4: {kind: toy/add, inputs: {a: s3}, params: {k: 2}}
  s5: {kind: toy/add, inputs: {a: s4, b: s1}}
  s6: {kind: toy/add, inputs: {a: s5}, params: {k: 3}}
YAML
export CEDM_TOY_KINDS=1
"$cedm" run exp.yaml >/dev/null 2>&1
n=$("$cedm" status exp.yaml | tail -1)
echo "cedm: $n"
hyperfine -N --warmup 3 --runs 30 --export-json cedm.json \
  "$cedm status exp.yaml" "$cedm run exp.yaml"

if command -v dvc >/dev/null; then
  git init -q . && dvc init -q
  {
    echo "stages:"
    echo "  base: {cmd: echo 1 > base.txt, outs: [base.txt]}"
    echo "  other: {cmd: cat base.txt > other.txt && echo 7 >> other.txt, deps: [base.txt], outs: [other.txt]}"
    prev=""
    for s in s1 s2 s3 s4 s5 s6; do
      echo "  $s:"
      echo "    foreach: [1, 2, 3]"
      echo "    do:"
      if [ "$s" = s1 ]; then
        echo "      cmd: \"cat base.txt > ${s}_\${item}.txt && echo \${item} >> ${s}_\${item}.txt\""
        echo "      deps: [base.txt]"
      else
        echo "      cmd: \"cat ${prev}_\${item}.txt > ${s}_\${item}.txt && echo $s >> ${s}_\${item}.txt\""
        echo "      deps: [\"${prev}_\${item}.txt\"]"
      fi
      echo "      outs: [\"${s}_\${item}.txt\"]"
      prev=$s
    done
  } > dvc.yaml
  dvc repro >dvc-repro.log 2>&1 || { cat dvc-repro.log dvc.yaml; exit 1; }
  echo "dvc $(dvc --version): $(dvc stage list | wc -l) stages"
  hyperfine -N --warmup 2 --runs 10 "dvc status" "dvc repro"
fi
