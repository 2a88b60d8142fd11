#!/usr/bin/env bash
# deps.sh [build|run]: makes sure the Debian packages GKAVision needs are present.
# A dependency counts as present when its header (or data file) is found on the system or under
# .deps/prefix (packages unpacked with `dpkg -x`, for machines without a package registry).
# Missing ones are installed with apt-get when running as root; otherwise the exact command is printed.
set -u
cd "$(dirname "$0")/.."
want=${1:-build}
prefix=.deps/prefix

# header-or-file|package
build_deps=(
  "cblas.h|libopenblas-dev"
  "jpeglib.h|libjpeg62-turbo-dev"
  "stb/stb_image.h|libstb-dev"
  "zlib.h|zlib1g-dev"
)
run_deps=(
  "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz|dataset-fashion-mnist"
)
# Installed alongside when anything is installed (listed by the build's requirements).
extra_pkgs=(libturbojpeg0-dev)

have() {
  local f=$1
  if [[ $f == /* ]]; then [[ -e $f || -e $prefix$f ]]; return; fi
  for d in /usr/include /usr/local/include /usr/include/x86_64-linux-gnu /usr/include/x86_64-linux-gnu/openblas-pthread \
           /usr/include/openblas /usr/include/aarch64-linux-gnu $prefix/usr/include; do
    [[ -e $d/$f ]] && return 0
  done
  return 1
}

deps=("${build_deps[@]}")
[[ $want == run ]] && deps+=("${run_deps[@]}")
missing=()
for entry in "${deps[@]}"; do
  f=${entry%%|*}; pkg=${entry##*|}
  have "$f" || missing+=("$pkg")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

line="apt-get install -y ${missing[*]} ${extra_pkgs[*]}"
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
  echo "GKAVision needs these Debian packages: ${missing[*]}" >&2
  echo "Install them with:  sudo $line" >&2
  exit 1
fi
echo "deps: installing ${missing[*]} ${extra_pkgs[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -q "${missing[@]}" "${extra_pkgs[@]}" >/tmp/gkav-apt.log 2>&1; then
  apt-get update -q >>/tmp/gkav-apt.log 2>&1
  if ! apt-get install -y -q "${missing[@]}" "${extra_pkgs[@]}" >>/tmp/gkav-apt.log 2>&1; then
    echo "deps: apt-get could not install ${missing[*]} (log: /tmp/gkav-apt.log)." >&2
    echo "On a machine without a package registry, unpack the .deb files into .deps/prefix (dpkg -x PKG.deb .deps/prefix)." >&2
    exit 1
  fi
fi
