#!/usr/bin/env bash
# Regenerate the results tables in docs/*.md from the cache: every block between
#   <!-- cedm report experiments/NAME.yaml -->  and  <!-- end cedm report -->
# is replaced by `cedm report experiments/NAME.yaml --format markdown` (which reads the cache
# only and computes nothing). Run after `cedm run` of the experiments those blocks name. A block
# whose experiment is not wholly cached here is kept as it is, with a warning (a partial cache
# would otherwise replace a full table by a partial or empty one); PARTIAL=1 writes it anyway.
# Usage: scripts/docs_results.sh [docs/results.md ...]
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
        left="$($cedm status "$exp" --changed 2>/dev/null | tail -n 1)"
        if [ "${PARTIAL:-0}" != 1 ] && ! [[ "$left" =~ :\ ([0-9]+)\ cached,\ 0\ will\ run,\ 0\ wait ]]; then
          printf '%s\n' "${old_block[@]}" >>"$tmp"
          echo "$f: kept the block of $exp: not wholly cached here ($left); run it first, or PARTIAL=1" >&2
        else
          $cedm report "$exp" --format markdown >>"$tmp"
          echo "$f ← $exp"
        fi
        echo "$line" >>"$tmp"
        exp=""
      else
        old_block+=("$line")
      fi
      continue
    fi
    echo "$line" >>"$tmp"
    if [[ "$line" =~ ^\<!--\ cedm\ report\ ([^ ]+)\ --\>$ ]]; then
      exp="${BASH_REMATCH[1]}"
      old_block=()
    fi
  done <"$f"
  [ -z "$exp" ] || { rm -f "$tmp"; echo "$f: block for $exp has no <!-- end cedm report -->" >&2; exit 1; }
  mv "$tmp" "$f"
done
