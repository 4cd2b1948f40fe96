#!/usr/bin/env python3
"""Replays the never-worse guard offline on the per-frame diagnosis CSVs of lock-step runs
(`eval --adapt --diagnose`), with other settings than the run used.

The guard only chooses which weights are served; the student trains the same either way. So a
run's CSV (the adapted and frozen photometric loss and the log-depth deviation of every fresh
triplet, and the adapted and frozen abs_rel of every frame) is enough to score what any guard
setting would have served, without running the adaptation again. The replay of the shipped
setting the run used (read from the `--json` report beside the CSV, `NAME.json` for `NAME.csv`,
else the defaults below) must reproduce the run's own `serving_adapted` column: the script
checks it and says so.

Usage: guard_replay.py [--trust 0.3,0.4,0.5] [--tolerance 0.02] [--margin 0.05]
                       [--window 32] [--min-samples 4] CSV...

A file named *.dev.* is scored on positions 200-299 (kitchen 200-299), others on 100-249
(kitchen_val 400-549); the worst 50-frame window after the first 50 is printed beside it.
"""
import argparse
import csv
import json
import math
import os
from collections import deque


class Guard:
    """The same rule as src/adapt/serve_guard.rs."""

    def __init__(self, window, min_samples, tolerance, trust, margin):
        self.scores = deque(maxlen=max(window, 1))
        self.min_samples = max(1, min(min_samples, window))
        self.tolerance, self.trust, self.margin = tolerance, trust, margin
        self.serving = False

    def record(self, adapted, frozen, deviation):
        if math.isfinite(frozen):
            bad = lambda v: v if math.isfinite(v) else math.inf
            self.scores.append((bad(adapted), frozen, bad(deviation)))
        n = len(self.scores)
        if n == 0:
            self.serving = False
            return self.serving
        mean_deviation = sum(s[2] for s in self.scores) / n
        frozen_sum = sum(s[1] for s in self.scores)
        ratio = sum(s[0] for s in self.scores) / frozen_sum if frozen_sum > 0 else math.nan
        allowed = 1 + self.tolerance if mean_deviation <= self.trust else 1 - self.margin
        self.serving = n >= self.min_samples and ratio <= allowed
        return self.serving


def number(text):
    try:
        return float(text)
    except ValueError:
        return math.nan


def replay(rows, guard):
    served = []
    for row in rows:
        adapted, frozen = number(row["adapted_loss"]), number(row["frozen_loss"])
        if not (math.isnan(adapted) or math.isnan(frozen)):
            guard.record(adapted, frozen, number(row["deviation"]))
        served.append(guard.serving)
    return served


def scored(rows, served, lo, hi):
    pick = [(r, s) for r, s in zip(rows, served) if lo <= int(r["position"]) < hi]
    value = sum(number(r["abs_rel_adapted"] if s else r["abs_rel_frozen"]) for r, s in pick)
    frozen = sum(number(r["abs_rel_frozen"]) for r, _ in pick)
    return value / len(pick), frozen / len(pick)


def worst_window(rows, served):
    worst = -math.inf
    for lo in range(50, len(rows), 50):
        value, frozen = scored(rows, served, lo, lo + 50)
        worst = max(worst, value / frozen - 1)
    return worst


def run_guard(path, defaults):
    """The guard settings of the run that wrote `path`: from NAME.json where it exists."""
    guards = {}
    report = os.path.splitext(path)[0] + ".json"
    if os.path.exists(report):
        with open(report) as f:
            guards = json.load(f).get("config", {}).get("guards", {})
    return Guard(
        guards.get("serve_window", defaults.window),
        guards.get("serve_min_samples", defaults.min_samples),
        guards.get("serve_tolerance", defaults.tolerance),
        guards.get("serve_trust_deviation", 0.5),
        guards.get("serve_evidence_margin", defaults.margin),
    )


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trust", default="0.3", help="trust-region deviations, comma-separated")
    p.add_argument("--tolerance", type=float, default=0.02)
    p.add_argument("--margin", type=float, default=0.05)
    p.add_argument("--window", type=int, default=32)
    p.add_argument("--min-samples", type=int, default=4)
    p.add_argument("csv", nargs="+")
    a = p.parse_args()
    trusts = [float(t) for t in a.trust.split(",")]
    make = lambda trust: Guard(a.window, a.min_samples, a.tolerance, trust, a.margin)
    print("| run | its own guard reproduced | adapted | " + " | ".join(
        f"served, trust {t} (worst window)" for t in trusts) + " |")
    print("|---|---|---|" + "---|" * len(trusts))
    for path in a.csv:
        with open(path) as f:
            rows = list(csv.DictReader(f))
        lo, hi = (200, 300) if ".dev." in path else (100, 250)
        logged = [r["serving_adapted"] == "1" for r in rows]
        same = replay(rows, run_guard(path, a)) == logged
        adapted, frozen = scored(rows, [True] * len(rows), lo, hi)
        cells = []
        for t in trusts:
            served = replay(rows, make(t))
            value, _ = scored(rows, served, lo, hi)
            cells.append(f"{value:.3f} ({value / frozen - 1:+.0%}; {worst_window(rows, served):+.0%})")
        print(f"| {path} | {'yes' if same else 'NO'} | {adapted:.3f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
