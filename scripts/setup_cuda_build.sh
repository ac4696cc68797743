#!/usr/bin/env bash
# Prepare an offline `--features cuda` build (docs/reproducing.md, "Building cuda").
#
# burn-cuda needs cubecl-llvm, whose build-dependency tracel-llvm-bundler downloads a prebuilt
# LLVM 23 from GitHub in its build script unless `<data dir>/tracel/tracel-llvm-23.1.0-4/` holds
# its sentinel file `.tracel-llvm-installed`; it then only asks that directory's
# `bin/llvm-config` (`--link-static --libs`, `--system-libs`, `--libdir`, `--includedir`) how to
# link. This script fills that directory from a system LLVM with the NVPTX target instead —
# Debian's llvm-22-dev and libpolly-22-dev (bookworm-security; `llvm-config --link-static
# --libs` names Polly's archives) by default, installed when missing and run as root —
# with an `llvm-config` wrapper that prints `--system-libs` as `-l` flags (Debian's prints the
# full path of libz3.so, which the bundler would turn into a bad `-l` flag).
#
#   scripts/setup_cuda_build.sh [LLVM_PREFIX]      # default /usr/lib/llvm-22
#   cargo build --release --features cuda
#
# No network is needed afterwards. At run time a GPU machine needs the NVIDIA driver (libcuda.so.1)
# and NVRTC (libnvrtc.so, from the CUDA toolkit or the nvidia-cuda-nvrtc wheel); both are loaded
# when the first CUDA node runs.
set -euo pipefail

# apt-get install, refreshing the package lists first when a package is not found (a fresh
# machine's lists may predate bookworm-security's LLVM 22).
apt_install() {
  apt-get install -y -qq "$@" >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq "$@" >/dev/null; }
}

prefix="${1:-/usr/lib/llvm-22}"
if [ ! -x "$prefix/bin/llvm-config" ] || [ ! -e "$prefix/lib/libPolly.a" ]; then
  if [ "$prefix" = /usr/lib/llvm-22 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup_cuda_build: installing llvm-22-dev libpolly-22-dev (Debian bookworm-security)"
    apt_install llvm-22-dev libpolly-22-dev
  elif [ ! -x "$prefix/bin/llvm-config" ]; then
    echo "setup_cuda_build: no LLVM at $prefix (need bin/llvm-config, static libraries with NVPTX)." >&2
    echo "  Debian 12: apt-get install llvm-22-dev libpolly-22-dev (bookworm-security); or pass another LLVM prefix." >&2
    exit 1
  fi
fi
# Every static library llvm-config names must be there (Polly's come in their own package).
for l in $("$prefix/bin/llvm-config" --link-static --libs); do
  if [ ! -e "$prefix/lib/lib${l#-l}.a" ]; then
    echo "setup_cuda_build: $prefix/lib/lib${l#-l}.a is missing (Debian: libpolly-22-dev for Polly)" >&2
    exit 1
  fi
done
if ! "$prefix/bin/llvm-config" --targets-built | grep -qw NVPTX; then
  echo "setup_cuda_build: $prefix's LLVM was built without the NVPTX target" >&2
  exit 1
fi

# The system libraries LLVM links against must be linkable as -l flags: Debian's runtime packages
# ship only libzstd.so.1 and the like; the -dev packages add the libzstd.so a linker looks for
# (the full build stopped at 'unable to find library -lzstd' without libzstd-dev).
linkable() { echo 'int main(void){return 0;}' | cc -x c - -o /dev/null "-l$1" 2>/dev/null; }
dev_package() {
  case "$1" in
    zstd) echo libzstd-dev ;; z) echo zlib1g-dev ;; xml2) echo libxml2-dev ;; z3) echo libz3-dev ;;
    ffi) echo libffi-dev ;; tinfo) echo libtinfo-dev ;; edit) echo libedit-dev ;; *) ;;
  esac
}
missing=()
for t in $("$prefix/bin/llvm-config" --link-static --system-libs); do
  case "$t" in
    -l*) l="${t#-l}" ;;
    /*/lib*.so | /*/lib*.a) b="${t##*/lib}"; l="${b%.*}" ;;
    *) continue ;;
  esac
  linkable "$l" || missing+=("$l")
done
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  pkgs=()
  for l in "${missing[@]}"; do
    p="$(dev_package "$l")"
    [ -n "$p" ] && pkgs+=("$p")
  done
  if [ ${#pkgs[@]} -gt 0 ]; then
    echo "setup_cuda_build: installing ${pkgs[*]} (LLVM links -l${missing[*]// / -l})"
    apt_install "${pkgs[@]}"
  fi
fi
for l in "${missing[@]}"; do
  if ! linkable "$l"; then
    echo "setup_cuda_build: LLVM needs -l$l, which the linker cannot find (Debian: apt-get install $(dev_package "$l"))" >&2
    exit 1
  fi
done

data="${XDG_DATA_HOME:-$HOME/.local/share}"
dest="$data/tracel/tracel-llvm-23.1.0-4"
mkdir -p "$dest/bin"
for d in include lib; do
  ln -sfn "$prefix/$d" "$dest/$d"
done
cat > "$dest/bin/llvm-config" <<WRAP
#!/usr/bin/env bash
# Written by cedm's scripts/setup_cuda_build.sh: $prefix's llvm-config, with --system-libs as -l flags.
real="$prefix/bin/llvm-config"
case " \$* " in
  *" --system-libs "*)
    out="\$("\$real" "\$@")"
    for t in \$out; do
      case "\$t" in
        /*/lib*.so|/*/lib*.a) b="\${t##*/lib}"; echo -n "-l\${b%.*} " ;;
        *) echo -n "\$t " ;;
      esac
    done
    echo ;;
  *) exec "\$real" "\$@" ;;
esac
WRAP
chmod +x "$dest/bin/llvm-config"
touch "$dest/.tracel-llvm-installed"
echo "setup_cuda_build: $dest → $prefix (LLVM $("$prefix/bin/llvm-config" --version)); now: cargo build --release --features cuda"
