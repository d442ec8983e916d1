#!/usr/bin/env bash
# Installs every Debian package Orchard needs to build, test and run.
# Idempotent (installs only what is missing), non-interactive, quiet; fails loudly.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config ccache git
  libtorch-dev libgloo-dev libopenblas0-pthread
  libzmq3-dev cppzmq-dev
  libprotobuf-dev protobuf-compiler
  libhiredis-dev redis-server
  libboost-dev libboost-program-options-dev
  libspdlog-dev libfmt-dev libyaml-cpp-dev libcli11-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  python3
  iproute2 procps   # tests: network namespaces as separate hosts (ip netns), sysctl
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "install-deps: missing packages (${missing[*]}) and not root; run as root" >&2; exit 1
  fi
fi

if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! $SUDO apt-get update -qq >/tmp/orchard-apt-update.log 2>&1; then
    echo "install-deps: apt-get update failed:" >&2; tail -20 /tmp/orchard-apt-update.log >&2; exit 1
  fi
  if ! $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/orchard-apt-install.log 2>&1; then
    echo "install-deps: apt-get install failed:" >&2; tail -40 /tmp/orchard-apt-install.log >&2; exit 1
  fi
fi

# LibTorch from Debian calls whatever libblas.so.3 is selected. The reference BLAS is 5-6x
# slower than OpenBLAS here, so make sure the OpenBLAS (pthread) variant is the alternative.
arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
for lib in libblas.so.3 liblapack.so.3; do
  cand=$(update-alternatives --list "${lib}-${arch}" 2>/dev/null | grep openblas-pthread || true)
  if [[ -n "$cand" ]]; then
    cur=$(readlink -f "/etc/alternatives/${lib}-${arch}" 2>/dev/null || true)
    if [[ "$cur" != "$(readlink -f "$cand")" ]]; then
      $SUDO update-alternatives --quiet --set "${lib}-${arch}" "$cand"
      echo "install-deps: selected $cand for ${lib}"
    fi
  else
    echo "install-deps: WARNING: no OpenBLAS alternative for ${lib}; LibTorch will use a slow BLAS" >&2
  fi
done
exit 0
