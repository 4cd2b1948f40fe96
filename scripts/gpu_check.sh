#!/usr/bin/env bash
# The prepared GPU check for a session that is lent a GPU machine (x86-64, CUDA 13, PyTorch 2.11
# in python3; no cargo, no TensorRT, no network). Three modes:
#
#   scripts/gpu_check.sh --pack       here: build the cuda binaries (release CLI + the GPU test
#                                      binaries), strip them, and gather into .gpu/ (git-ignored)
#                                      what the GPU machine lacks: GStreamer/GLib libraries, and a
#                                      subset of ../shared (the KITTI model, 14 kitchen frames,
#                                      one KITTI frame, all of kitchen_val). Binaries and libraries
#                                      travel xz-compressed. Carry `.gpu` to the GPU machine.
#   scripts/gpu_check.sh --dry-run    anywhere: say what would run and what is missing, run nothing.
#   scripts/gpu_check.sh [--out DIR]  on the GPU machine: every GPU test, `bench infer --device
#                                      cuda`, `bench loss --device cuda`, `bench adapt --device
#                                      cuda`, then the shipped adaptation on the GPU on kitchen_val
#                                      (lock-step `eval --adapt`, seeds 0-2, as
#                                      scripts/adapt_experiments.sh runs `default val`, all seeds
#                                      at once); one log, one JSON summary and adapt_runs.tar.gz
#                                      (each run's eval JSON and per-frame CSV) in DIR (default
#                                      $OUT, else out/gpu_check); summarise them with
#                                      scripts/adapt_summary.py after unpacking. Each step has its
#                                      own time limit; the whole run stays under 8 minutes.
#                                      GPU_CHECK_ONLY=REGEX runs only the matching steps;
#                                      GPU_CHECK_SEEDS (default "0 1 2") and GPU_CHECK_VARIANTS
#                                      (default "default"; each NAME or NAME:VAR=VALUE,VAR=VALUE,
#                                      the environment of that variant's runs; its eval flags in
#                                      GPU_CHECK_FLAGS_NAME) widen the runs.
#
# libtorch comes from the GPU machine's own PyTorch (python3), the same version (2.11) the binaries
# were linked against; the binaries load its CUDA backend themselves (src/engine/torch_cuda.rs).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PACK=.gpu
MODE=run
OUT_DIR=${OUT:-out/gpu_check}
while [ $# -gt 0 ]; do
  case "$1" in
    --pack) MODE=pack ;;
    --dry-run) MODE=dry ;;
    --out) OUT_DIR=$2; shift ;;
    -h|--help) sed -n 2,24p "$0"; exit 0 ;;
    *) echo "gpu_check: unknown argument \`$1\` (expected --pack, --dry-run or --out DIR)" >&2; exit 2 ;;
  esac
  shift
done

# The GPU tests: each skips with a printed reason where there is no GPU, and runs on one.
GPU_TESTS=(cuda_gpu cuda_adapt cuda_torch cuda_nvrtc engine_tensorrt)
SHARED_SRC=${LIVEDEPTH_SHARED:-$ROOT/../shared}

pack() {
  command -v cargo >/dev/null || { echo "gpu_check --pack: cargo is not installed here; pack on the build machine" >&2; exit 1; }
  rm -rf "$PACK" && mkdir -p "$PACK/bin" "$PACK/lib" "$PACK/shared"
  echo "== building the release CLI with --features bench,cuda,tensorrt"
  cargo build --release --features bench,cuda,tensorrt || exit 1
  strip -o "$PACK/bin/livedepth" target/release/livedepth
  echo "== building the GPU test binaries"
  local args=() t
  for t in "${GPU_TESTS[@]}"; do args+=(--test "$t"); done
  cargo test --features bench,cuda,tensorrt --no-run --message-format=json "${args[@]}" >"$PACK/build.json" || exit 1
  python3 - "$PACK" "${GPU_TESTS[@]}" <<'EOF' || exit 1
import json, subprocess, sys
pack, wanted = sys.argv[1], set(sys.argv[2:])
found = {}
for line in open(f"{pack}/build.json"):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] in wanted:
        found[m["target"]["name"]] = m["executable"]
missing = wanted - found.keys()
if missing:
    sys.exit(f"gpu_check --pack: cargo built no test binary for {sorted(missing)}")
for name, exe in found.items():
    subprocess.run(["strip", "-o", f"{pack}/bin/{name}", exe], check=True)
EOF
  rm -f "$PACK/build.json"
  echo "== gathering the libraries a bare GPU machine may lack (GStreamer, GLib and their needs)"
  ldd target/release/livedepth | awk '$3 ~ /^\// {print $3}' |
    grep -vE '/(libc|libm|libstdc\+\+|libgcc_s|ld-linux[^/]*|librt|libdl|libpthread|libutil)\.so' |
    grep -vE 'torch|c10' | while read -r lib; do cp -L "$lib" "$PACK/lib/"; done
  echo "== a subset of ../shared ($SHARED_SRC)"
  if [ -d "$SHARED_SRC/models/rtmonodepth_s/m_640x192" ]; then
    mkdir -p "$PACK/shared/models/rtmonodepth_s" "$PACK/shared/data/kitchen"
    cp -r "$SHARED_SRC/models/rtmonodepth_s/m_640x192" "$PACK/shared/models/rtmonodepth_s/"
    cp "$SHARED_SRC/data/kitchen/camera-intrinsics.txt" "$PACK/shared/data/kitchen/"
    for i in 0 1 2 95 96 97 98 99 100 101 102 103 104 105; do
      cp "$SHARED_SRC"/data/kitchen/frame-$(printf %06d "$i").* "$PACK/shared/data/kitchen/"
    done
    local kitti=data/kitti_tiny/2011_09_26/2011_09_26_drive_0023_sync/image_02/data
    mkdir -p "$PACK/shared/$kitti" && cp "$SHARED_SRC/$kitti/0000000000.png" "$PACK/shared/$kitti/"
    cp -r "$SHARED_SRC/data/kitchen_val" "$PACK/shared/data/"
  else
    echo "   ../shared is absent: the real-data GPU tests will print SKIP there"
  fi
  echo "$ROOT" >"$PACK/build_root"
  echo "== compressing the binaries and libraries"
  tar -C "$PACK" -cJf "$PACK/payload.tar.xz" bin lib && rm -rf "$PACK/bin" "$PACK/lib"
  du -sh "$PACK"
  echo "carry \`$PACK\` and run \`bash scripts/gpu_check.sh\` on the GPU machine"
}

# python3 with torch (the GPU machine's), its torch/lib and its nvidia/*/lib folders.
torch_python() {
  local py
  for py in "${LIVEDEPTH_PYTHON:-}" python3 "$HOME/.cache/livedepth/torch-2.11/bin/python"; do
    [ -n "$py" ] && "$py" -c 'import torch' 2>/dev/null && { echo "$py"; return 0; }
  done
  return 1
}

setup_env() {
  if [ -f "$PACK/payload.tar.xz" ] && [ ! -d "$PACK/bin" ]; then
    tar -C "$PACK" -xJf "$PACK/payload.tar.xz" || return 1
  fi
  PY=$(torch_python) || { echo "no python with torch: cannot find libtorch" ; return 1; }
  TORCH_DIR=$("$PY" -c 'import os, torch; print(os.path.dirname(torch.__file__))')
  SITE=$(dirname "$TORCH_DIR")
  local libpath="$TORCH_DIR/lib" d
  for d in "$SITE"/nvidia/*/lib /usr/local/nvidia/lib64 /usr/local/cuda/lib64; do
    [ -d "$d" ] && libpath="$libpath:$d"
  done
  # Only the carried libraries the machine does not have itself.
  mkdir -p /tmp/gpu_check_lib
  if [ -d "$PACK/lib" ]; then
    local f known
    known=$(ldconfig -p 2>/dev/null)
    for f in "$PACK"/lib/*; do
      grep -q "[[:space:]]$(basename "$f") " <<<"$known" || ln -sf "$ROOT/$f" /tmp/gpu_check_lib/
    done
  fi
  export LD_LIBRARY_PATH="$libpath:/tmp/gpu_check_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  NVRTC=$(ls "$SITE"/nvidia/*/lib/libnvrtc.so.1[0-9]* /usr/local/cuda/lib64/libnvrtc.so.1[0-9]* 2>/dev/null | grep -v builtins | head -1)
  [ -n "$NVRTC" ] && export LIVEDEPTH_NVRTC=$NVRTC
  export LIVEDEPTH_PYTHON=$PY
  [ -d "$PACK/shared" ] && export LIVEDEPTH_SHARED=$ROOT/$PACK/shared
  # Paths compiled into the binaries (scripts, ../shared) resolve from the build checkout.
  if [ -f "$PACK/build_root" ]; then
    local built; built=$(cat "$PACK/build_root")
    if [ ! -e "$built" ]; then mkdir -p "$(dirname "$built")" && ln -s "$ROOT" "$built"; fi
    [ -e "$built/../shared" ] || { [ -d "$PACK/shared" ] && ln -s "$ROOT/$PACK/shared" "$built/../shared"; }
  fi
  return 0
}

# The steps: name, time limit (s), command.
STEPS=()
step() { STEPS+=("$1|$2|$3"); }
for t in "${GPU_TESTS[@]}"; do step "test:$t" 100 "$PACK/bin/$t --test-threads=1 --nocapture"; done
step "bench:infer" 90 "$PACK/bin/livedepth bench infer --device cuda --iters 100 --warmup 10"
step "bench:loss" 90 "$PACK/bin/livedepth bench loss --device cuda"
step "bench:adapt" 120 "$PACK/bin/livedepth bench adapt --device cuda --steps 10 --frames 50"
# The adaptation runs, every (variant, seed) at once: each is one lock-step process that keeps
# the GPU mostly idle, and one CPU thread each keeps them from fighting over the cores.
ADAPT_RUNS=()
for variant in ${GPU_CHECK_VARIANTS:-default}; do
  name=${variant%%:*}
  envs=""; [[ $variant == *:* ]] && envs=${variant#*:}
  flags_var=GPU_CHECK_FLAGS_$name
  flags=${!flags_var:-}
  for seed in ${GPU_CHECK_SEEDS:-0 1 2}; do
    ADAPT_RUNS+=("env OMP_NUM_THREADS=1 ${envs//,/ } $PACK/bin/livedepth eval --quiet $flags \
--dataset kitchen:$PACK/shared/data/kitchen_val --model $PACK/shared/models/rtmonodepth_s/m_640x192 \
--adapt --seed $seed --json $OUT_DIR/$name.val.s$seed.json --diagnose $OUT_DIR/$name.val.s$seed.csv \
>$OUT_DIR/$name.val.s$seed.log 2>&1")
  done
done
# The step runs a generated script (the runner starts each step in a new shell).
write_adapt_script() {
  local run
  {
    echo 'pids=(); failed=0'
    for run in "${ADAPT_RUNS[@]}"; do printf '%s &\npids+=($!)\n' "$run"; done
    echo 'for pid in "${pids[@]}"; do wait "$pid" || failed=1; done'
    echo "for log in $OUT_DIR/*.val.s*.log; do echo \"-- \$log\"; tail -n 25 \"\$log\"; done"
    echo 'exit $failed'
  } >"$OUT_DIR/.adapt_runs.sh"
}
step "adapt:val" 300 "bash $OUT_DIR/.adapt_runs.sh"

if [ "$MODE" = pack ]; then pack; exit $?; fi

if [ "$MODE" = dry ]; then
  echo "gpu_check --dry-run: would run, in order (each under its own time limit):"
  for s in "${STEPS[@]}"; do IFS='|' read -r n l c <<<"$s"; printf '  %-16s %4ss  %s\n' "$n" "$l" "$c"; done
  echo "  where $OUT_DIR/.adapt_runs.sh starts, all at once:"
  for r in "${ADAPT_RUNS[@]}"; do echo "    $r"; done
  echo "and write $OUT_DIR/gpu_check.log and $OUT_DIR/gpu_check.json"
  echo "what it has and lacks here:"
  lacks=0
  if [ -f "$PACK/payload.tar.xz" ]; then
    listed=$(tar -tJf "$PACK/payload.tar.xz")
    for b in livedepth "${GPU_TESTS[@]}"; do
      grep -qx "bin/$b" <<<"$listed" && echo "  ok      bin/$b (in $PACK/payload.tar.xz)" || { echo "  MISSING bin/$b in $PACK/payload.tar.xz (run scripts/gpu_check.sh --pack here)"; lacks=1; }
    done
  else
    echo "  MISSING $PACK/payload.tar.xz (run scripts/gpu_check.sh --pack here)"; lacks=1
  fi
  if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    echo "  ok      GPU: $(nvidia-smi -L | head -1)"
  else
    echo "  MISSING a GPU (nvidia-smi finds none): the tests would print SKIP and the benches would say no GPU"; lacks=1
  fi
  if py=$(torch_python); then
    echo "  ok      python with torch: $py ($("$py" -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda)'))"
  else
    echo "  MISSING python3 with torch (libtorch comes from it)"; lacks=1
  fi
  [ -d "$PACK/shared" ] && echo "  ok      shared subset $PACK/shared" || echo "  MISSING $PACK/shared: the real-data GPU tests would SKIP"
  [ -d "$PACK/shared/data/kitchen_val" ] || { echo "  MISSING $PACK/shared/data/kitchen_val: the GPU adaptation runs would fail"; lacks=1; }
  [ "$lacks" = 0 ] && echo "nothing missing: ready to run on a GPU machine" || echo "something is missing (above)"
  exit 0
fi

# Run mode (on the GPU machine).
mkdir -p "$OUT_DIR"
LOG=$OUT_DIR/gpu_check.log
RESULTS=$OUT_DIR/.steps.tsv
: >"$LOG"; : >"$RESULTS"
write_adapt_script
setup_env || { echo "gpu_check: $(torch_python || echo 'no python3 with torch')" | tee -a "$LOG"; exit 1; }
{
  echo "== machine"; nvidia-smi -L 2>&1; uname -m
  echo "python $PY, torch $("$PY" -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.is_available())')"
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"; echo "LIVEDEPTH_NVRTC=${LIVEDEPTH_NVRTC:-}"
} >>"$LOG" 2>&1
for s in "${STEPS[@]}"; do
  IFS='|' read -r name limit cmd <<<"$s"
  # GPU_CHECK_ONLY=REGEX runs only the steps whose name matches (e.g. `adapt:` or `test:`).
  if [ -n "${GPU_CHECK_ONLY:-}" ] && ! [[ $name =~ $GPU_CHECK_ONLY ]]; then continue; fi
  echo "== $name: $cmd" | tee -a "$LOG"
  start=$(date +%s.%N)
  timeout "$limit" bash -c "$cmd" >"$OUT_DIR/.step.log" 2>&1
  rc=$?
  secs=$(python3 -c "import time; print(round(time.time() - $start, 1))")
  cat "$OUT_DIR/.step.log" >>"$LOG"
  skips=$(grep -c 'SKIP' "$OUT_DIR/.step.log")
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$secs" "$skips" >>"$RESULTS"
  echo "   rc $rc, ${secs}s, $skips SKIP lines" | tee -a "$LOG"
done
rm -f "$OUT_DIR/.step.log"
# At most a few files come back from a lent machine: the runs travel as one archive.
if ls "$OUT_DIR"/*.val.s*.csv >/dev/null 2>&1; then
  (cd "$OUT_DIR" && tar -czf adapt_runs.tar.gz ./*.val.s*.* && rm -f ./*.val.s*.* .adapt_runs.sh)
fi
python3 - "$RESULTS" "$LOG" "$OUT_DIR/gpu_check.json" <<'EOF'
import json, re, sys
rows, log, out = sys.argv[1], open(sys.argv[2]).read(), sys.argv[3]
steps = []
for line in open(rows):
    name, rc, secs, skips = line.rstrip("\n").split("\t")
    steps.append({"step": name, "exit_code": int(rc), "seconds": float(secs), "skip_lines": int(skips),
                  "timed_out": int(rc) == 124})
passed = re.findall(r"test result: (\w+)\. (\d+) passed; (\d+) failed", log)
summary = {
    "all_ok": all(s["exit_code"] == 0 for s in steps),
    "steps": steps,
    "test_totals": {"passed": sum(int(p) for _, p, _ in passed), "failed": sum(int(f) for _, _, f in passed)},
    "gpu": next(iter(re.findall(r"^GPU 0: .*$", log, re.M)), None),
}
json.dump(summary, open(out, "w"), indent=2)
print(json.dumps(summary, indent=2))
EOF
rm -f "$RESULTS"
