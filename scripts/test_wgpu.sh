#!/usr/bin/env bash
# The GPU code path through burn's wgpu backend, as .ci/run runs it when time allows: the same
# tiny experiment on wgpu and on the CPU, compared (tests/cli/wgpu.rs). Needs a Vulkan driver —
# on a machine without a GPU, Mesa's lavapipe (Debian: mesa-vulkan-drivers libvulkan1) — and a
# second build of burn with the `wgpu` feature (about 20 min on 2 cores).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CUBECL_AUTOTUNE_LEVEL=minimal exec cargo test --features wgpu --test cli wgpu "$@"
