#!/usr/bin/env bash
# Reproduces the online-adaptation tables of docs/adapt.md: the kitchen (7-Scenes redkitchen,
# frames 0-299) frozen vs adapted on three seeds, the ablation (no distillation, no auto-mask,
# no replay, no forgetting guard) and KITTI tiny scored with the weights left after each kitchen
# run (forgetting on the home domain). Needs ../shared (data and the RT-MonoDepth-S weights).
#
#   scripts/adapt_experiments.sh [OUT_DIR]      (default out/adapt_experiments)
#   SEEDS="0 1 2" RUNS="default no-distill" scripts/adapt_experiments.sh
#
# Each kitchen run writes OUT/RUN.sSEED.{json,log,safetensors}; the KITTI score of the adapted
# weights goes to OUT/RUN.sSEED.kitti.json; a table of all of them to OUT/summary.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-out/adapt_experiments}
SEEDS=${SEEDS:-"0 1 2"}
RUNS=${RUNS:-"frozen default no-distill no-automask no-replay no-guard"}
WIDTH=${WIDTH:-128}
HEIGHT=${HEIGHT:-96}
DATA=${DATA:-../shared/data}
MODEL=${MODEL:-../shared/models/rtmonodepth_s/m_640x192}
BIN=target/release/livedepth
# One libtorch thread per run: on a shared 2-core machine the default thread pool
# oversubscribes the cores (measured 0.15 vs 0.9 steps/s under load). The figures in
# docs/adapt.md were taken this way (libtorch's sums can differ in the last bits with another
# thread count).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

for path in "$DATA/kitchen" "$DATA/kitti_tiny" "$MODEL"; do
    if [ ! -e "$path" ]; then
        echo "missing $path (needs ../shared)" >&2
        exit 1
    fi
done
cargo build --release --quiet
mkdir -p "$OUT"

flags_of() {
    case "$1" in
        frozen) echo "--steps-per-frame 0" ;;
        default) echo "" ;;
        no-distill) echo "--no-distill" ;;
        no-automask) echo "--no-automask" ;;
        no-replay) echo "--replay 0" ;;
        no-guard) echo "--no-forgetting-guard" ;;
        *) echo "unknown run $1" >&2; exit 1 ;;
    esac
}

"$BIN" eval --quiet --dataset "kitti:$DATA/kitti_tiny" --model "$MODEL" \
    --json "$OUT/start.kitti.json" > "$OUT/start.kitti.log"

for run in $RUNS; do
    for seed in $SEEDS; do
        name="$run.s$seed"
        # shellcheck disable=SC2046
        "$BIN" eval --quiet --dataset "kitchen:$DATA/kitchen" --model "$MODEL" \
            --width "$WIDTH" --height "$HEIGHT" --frames 0..300 --adapt --seed "$seed" \
            $(flags_of "$run") --checkpoint "$OUT/$name.safetensors" \
            --json "$OUT/$name.json" > "$OUT/$name.log" 2>&1
        "$BIN" eval --quiet --dataset "kitti:$DATA/kitti_tiny" --model "$OUT/$name.safetensors" \
            --json "$OUT/$name.kitti.json" > "$OUT/$name.kitti.log"
        echo "done $name" >&2
        [ "$run" = frozen ] && break # the frozen model does not depend on the seed
    done
done

python3 - "$OUT" <<'PY' | tee "$OUT/summary.txt"
import glob, json, os, sys

out = sys.argv[1]
metrics = ["abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3"]
start = json.load(open(os.path.join(out, "start.kitti.json")))["abs_rel"]
print(f"KITTI tiny abs_rel of the start model: {start:.3f}")
print("| run | seed | frames | " + " | ".join(metrics) + " | abs_rel per 50 frames | KITTI after |")
print("|---" * (len(metrics) + 5) + "|")
for path in sorted(glob.glob(os.path.join(out, "*.s*.json"))):
    if path.endswith(".kitti.json"):
        continue
    name = os.path.basename(path)[: -len(".json")]
    run, seed = name.rsplit(".s", 1)
    report = json.load(open(path))
    rows = report["per_frame"]
    kitti = json.load(open(path[: -len(".json")] + ".kitti.json"))["abs_rel"]

    def mean(rows, key):
        return sum(r[key] for r in rows) / len(rows)

    windows = " ".join(f"{mean(rows[i:i + 50], 'abs_rel'):.3f}" for i in range(0, len(rows), 50))
    for label, part in (("0-299", rows), ("200-299", rows[200:])):
        values = " | ".join(f"{mean(part, m):.3f}" for m in metrics)
        extra = f"{windows} | {kitti:.3f}" if label == "0-299" else " | "
        print(f"| {run} | {seed} | {label} | {values} | {extra} |")
PY
