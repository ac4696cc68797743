#!/usr/bin/env bash
# Regenerate the results tables in docs/*.md from the cache: every block between
#   <!-- cedm report experiments/NAME.yaml -->  and  <!-- end cedm report -->
# is replaced by `cedm report experiments/NAME.yaml --format markdown` (which reads the cache
# only and computes nothing; nodes not cached are absent). Run after `cedm run` of the
# experiments those blocks name. Usage: scripts/docs_results.sh [docs/results.md ...]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cedm="${CEDM:-cargo run -q --}"
files=("$@")
[ ${#files[@]} -gt 0 ] || files=(docs/results.md)
for f in "${files[@]}"; do
  tmp="$(mktemp)"
  exp=""
  while IFS= read -r line || [ -n "$line" ]; do
    if [ -n "$exp" ]; then
      if [ "$line" = "<!-- end cedm report -->" ]; then
        $cedm report "$exp" --format markdown >>"$tmp"
        echo "$line" >>"$tmp"
        echo "$f ← $exp"
        exp=""
      fi
      continue
    fi
    echo "$line" >>"$tmp"
    if [[ "$line" =~ ^\<!--\ cedm\ report\ ([^ ]+)\ --\>$ ]]; then
      exp="${BASH_REMATCH[1]}"
    fi
  done <"$f"
  [ -z "$exp" ] || { rm -f "$tmp"; echo "$f: block for $exp has no <!-- end cedm report -->" >&2; exit 1; }
  mv "$tmp" "$f"
done
