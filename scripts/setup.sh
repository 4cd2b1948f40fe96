#!/usr/bin/env bash
# Installs what livedepth needs on a fresh Debian/Ubuntu machine, skipping what is already there:
#   * GStreamer 1.x development files, plugins and tools (apt);
#   * a Python venv with torch==2.11.0 (provides libtorch for tch, and the PyTorch peer for
#     benchmarks and parity tests, with onnxruntime and onnx for the ONNX export checks) in a
#     per-user cache, shared by every clone;
#   * the NVRTC wheel (libnvrtc) so CUDA kernels compile without a CUDA toolkit.
# Then writes .cargo/config.toml (ignored by git) pointing cargo at that libtorch.
set -euo pipefail

TORCH_VERSION="${LIVEDEPTH_TORCH_VERSION:-2.11.0}"
VENV="${LIVEDEPTH_TORCH_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/livedepth/torch-${TORCH_VERSION%.*}}"

APT_PACKAGES=(
  pkg-config
  libgstreamer1.0-dev
  libgstreamer-plugins-base1.0-dev
  gstreamer1.0-plugins-base
  gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly
  gstreamer1.0-libav
  gstreamer1.0-tools
  libgstrtspserver-1.0-dev
  python3-venv
  g++
  # Fetching the TensorRT headers' package from crates.io (below).
  curl
  ca-certificates
  # `make test` checks that the code builds for aarch64 (Jetson): the cross C++ compiler is for
  # torch-sys's wrapper (see the aarch64 step below).
  g++-aarch64-linux-gnu
)

log() { printf '[setup] %s\n' "$*" >&2; }


missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing apt packages: ${missing[*]}"
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  log "apt packages present"
fi

if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('$TORCH_VERSION') else 1)" 2>/dev/null; then
  log "torch $TORCH_VERSION present in $VENV"
else
  log "creating $VENV with torch==$TORCH_VERSION (a one-time download of several GB)"
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q "torch==$TORCH_VERSION" numpy pillow onnxruntime==1.32.0 onnx==1.23.2
fi
# onnxruntime and onnx check `livedepth export` (tests/export_onnx.rs).
if ! "$VENV/bin/python" -c "import numpy, PIL, onnxruntime, onnx" 2>/dev/null; then
  log "installing numpy, pillow, onnxruntime and onnx into $VENV"
  "$VENV/bin/pip" install -q numpy pillow onnxruntime==1.32.0 onnx==1.23.2
fi
# websockets, mcap, mcap-protobuf-support and mcap-ros2-support are the independent clients of
# the Foxglove live view and the MCAP recording, and the writer of the ROS 2 bags that the
# mcap:// source replays (tests/foxglove_mcap.rs, tests/mcap_source.rs).
if ! "$VENV/bin/python" -c "import websockets, mcap, mcap_protobuf, mcap_ros2" 2>/dev/null; then
  log "installing websockets, mcap, mcap-protobuf-support and mcap-ros2-support into $VENV"
  "$VENV/bin/pip" install -q websockets==17.4 mcap==1.6.0 mcap-protobuf-support==0.6.0 \
    mcap-ros2-support==0.6.0
fi
# eclipse-zenoh (Zenoh's own Python binding, the same 1.10.2 as our crate) is the independent
# subscriber of `run --zenoh`; foxglove-schemas-protobuf, Foxglove's published schemas, decodes
# what it receives (tests/zenoh_live.rs).
if ! "$VENV/bin/python" -c "import zenoh, foxglove_schemas_protobuf" 2>/dev/null; then
  log "installing eclipse-zenoh and foxglove-schemas-protobuf into $VENV"
  "$VENV/bin/pip" install -q eclipse-zenoh==1.10.2 foxglove-schemas-protobuf==0.4.0
fi
if ! "$VENV/bin/python" -c "import nvidia.cuda_nvrtc" 2>/dev/null && ! ls "$VENV"/lib/python3*/site-packages/nvidia/cu*/lib/libnvrtc.so* >/dev/null 2>&1 && ! ls "$VENV"/lib/python3*/site-packages/nvidia/cuda_nvrtc/lib/libnvrtc.so* >/dev/null 2>&1; then
  log "installing the NVRTC wheel"
  "$VENV/bin/pip" install -q nvidia-cuda-nvrtc
fi
# TensorRT's C++ headers (Apache-2.0) for the `tensorrt` feature's shim, which is compiled
# against them and loads libnvinfer at run time: nothing of TensorRT is needed to build. They
# come from a registry package, the crates.io crate trtx-sys 0.5.0, which vendors the TensorRT
# 10.16 headers (checked by its sha256 from the crates.io index). Where the system has its own
# TensorRT headers (JetPack), build.rs prefers those.
TRT_HEADERS_CRATE=trtx-sys-0.5.0
TRT_HEADERS_SHA256=1efd9036abbd2775da5df4e49793ec8e656f026fb9c60dff7e95bda2d654e634
TRT_INCLUDE="${XDG_CACHE_HOME:-$HOME/.cache}/livedepth/tensorrt-headers-10.16/include"
if [[ -f "$TRT_INCLUDE/NvInfer.h" && -f "$TRT_INCLUDE/NvOnnxParser.h" ]]; then
  log "TensorRT 10.16 headers present in $TRT_INCLUDE"
else
  log "fetching the TensorRT 10.16 headers ($TRT_HEADERS_CRATE from crates.io)"
  tmp=$(mktemp -d)
  curl -fsSL --retry 3 -o "$tmp/h.crate" "https://static.crates.io/crates/trtx-sys/$TRT_HEADERS_CRATE.crate"
  echo "$TRT_HEADERS_SHA256  $tmp/h.crate" | sha256sum -c --quiet -
  tar -xzf "$tmp/h.crate" -C "$tmp" "$TRT_HEADERS_CRATE/TensorRT-Headers/TRT-Enterprise-10.16"
  mkdir -p "$(dirname "$TRT_INCLUDE")"
  rm -rf "$TRT_INCLUDE.partial"
  mv "$tmp/$TRT_HEADERS_CRATE/TensorRT-Headers/TRT-Enterprise-10.16" "$TRT_INCLUDE.partial"
  rm -rf "$TRT_INCLUDE" && mv "$TRT_INCLUDE.partial" "$TRT_INCLUDE"
  rm -rf "$tmp"
fi
# Point cargo (for this clone) at the venv's libtorch and Python, so that plain `cargo build`,
# `cargo test` and `cargo run` work without hand-set environment variables.
if command -v rustup >/dev/null; then
  if ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
    log "adding the aarch64-unknown-linux-gnu Rust target (for the Jetson build check)"
    rustup target add aarch64-unknown-linux-gnu
  fi
elif ! rustc --print target-list >/dev/null 2>&1 || [[ ! -d "$(rustc --print sysroot)/lib/rustlib/aarch64-unknown-linux-gnu" ]]; then
  log "no rustup and no aarch64-unknown-linux-gnu standard library: install rustup (https://rustup.rs), then run this again"
  exit 1
fi
TORCH_DIR=$("$VENV/bin/python" -c "import torch, os; print(os.path.dirname(torch.__file__))")
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$repo_root/.cargo"
want=$(cat <<CFG
# Written by scripts/setup.sh for this machine; not committed.
[env]
LIBTORCH = "$TORCH_DIR"
LIBTORCH_CXX11_ABI = "1"
LIVEDEPTH_PYTHON = "$VENV/bin/python"
LIVEDEPTH_TENSORRT_HEADERS = "$TRT_INCLUDE"
CFG
)
if [[ "$(cat "$repo_root/.cargo/config.toml" 2>/dev/null)" != "$want" ]]; then
  printf '%s\n' "$want" > "$repo_root/.cargo/config.toml"
  log "wrote .cargo/config.toml (libtorch at $TORCH_DIR)"
fi
log "done"
