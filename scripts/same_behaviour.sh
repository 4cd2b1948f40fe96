#!/usr/bin/env bash
# Checks that a refactor left behaviour unchanged (issue #14's acceptance): runs two livedepth
# binaries, the one before the change and the one after, on the same work and requires identical
# per-frame figures:
#   - a lock-step adaptation on the kitchen_val recording (`eval --adapt --seed 0`, the adaptation
#     defaults), frames FRAMES (default 0..80: about 70 s per binary on 2 cores in a debug build);
#   - the KITTI tiny evaluation of the shared KITTI model (frozen).
# One libtorch thread and one rayon thread (the CPU loss), so that every sum is taken in one
# order (see scripts/adapt_experiments.sh).
#
# Usage: scripts/same_behaviour.sh BEFORE_BIN AFTER_BIN [FRAMES] [OUT_DIR]
#   e.g. git stash; cargo build; cp target/debug/livedepth /tmp/before; git stash pop;
#        cargo build; scripts/same_behaviour.sh /tmp/before target/debug/livedepth
# Exits 0 when every per-frame row and the adaptation summary agree exactly, 1 otherwise (and
# prints the first difference), 2 when ../shared or a binary is missing or a run fails.
set -euo pipefail

if [ $# -lt 2 ]; then
    sed -n '2,15p' "$0" >&2
    exit 2
fi
# Paths as given, before moving to the repository root.
BEFORE=$(realpath -m "$1")
AFTER=$(realpath -m "$2")
FRAMES=${3:-0..80}
OUT=$(realpath -m "${4:-$(mktemp -d)}")
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
MODEL=${MODEL:-../shared/models/rtmonodepth_s/m_640x192}
PYTHON=${PYTHON:-$HOME/.cache/livedepth/torch-2.11/bin/python}
export OMP_NUM_THREADS=1 RAYON_NUM_THREADS=1

for path in "$BEFORE" "$AFTER"; do
    [ -x "$path" ] || { echo "same_behaviour: $path is not an executable livedepth binary" >&2; exit 2; }
done
for path in "$DATA/kitchen_val" "$DATA/kitti_tiny" "$MODEL"; do
    [ -e "$path" ] || { echo "same_behaviour: missing $path (needs ../shared)" >&2; exit 2; }
done
[ -x "$PYTHON" ] || PYTHON=python3
mkdir -p "$OUT"
echo "same_behaviour: outputs and logs in $OUT" >&2

for side in before after; do
    bin=$BEFORE
    [ "$side" = after ] && bin=$AFTER
    echo "== $side: $bin" >&2
    for run in adapt kitti; do
        if [ "$run" = adapt ]; then
            args=(--dataset "kitchen:$DATA/kitchen_val" --adapt --seed 0 --frames "$FRAMES")
        else
            args=(--dataset "kitti:$DATA/kitti_tiny")
        fi
        if ! "$bin" eval --quiet "${args[@]}" --model "$MODEL" --json "$OUT/$side.$run.json" \
            > "$OUT/$side.$run.log" 2>&1; then
            echo "same_behaviour: the $side binary failed on the $run run:" >&2
            tail -5 "$OUT/$side.$run.log" >&2
            exit 2
        fi
    done
done

"$PYTHON" - "$OUT" <<'EOF'
import json, sys
out = sys.argv[1]
ok = True
for run, keys in (("adapt", ("per_frame", "adapt", "abs_rel")), ("kitti", ("per_frame", "abs_rel"))):
    a = json.load(open(f"{out}/before.{run}.json"))
    b = json.load(open(f"{out}/after.{run}.json"))
    for key in keys:
        if a.get(key) != b.get(key):
            ok = False
            if key == "per_frame":
                row = next(i for i, (x, y) in enumerate(zip(a[key], b[key])) if x != y) \
                    if len(a[key]) == len(b[key]) else "count"
                print(f"{run}: per-frame rows differ (first at row {row})")
            else:
                print(f"{run}: `{key}` differs: {a.get(key)} vs {b.get(key)}")
    print(f"{run}: {len(a['per_frame'])} frames, abs_rel {a['abs_rel']:.6f} before, {b['abs_rel']:.6f} after")
print("same behaviour" if ok else "DIFFERENT behaviour")
sys.exit(0 if ok else 1)
EOF
