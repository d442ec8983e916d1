#!/usr/bin/env bash
# Steps/s of every registered env through a single-threaded VectorEnv of N = 1, 16, 256
# (random actions), plus CartPole against a bare loop of the same equations.
# Usage: bench/envs.sh [BUILD_DIR] [SECONDS_PER_SIZE]   Results: BUILD_DIR/bench-results/envs.*
set -euo pipefail
build="${1:-build}"
secs="${2:-1}"
out="$build/bench-results"
mkdir -p "$out"
orchard="$build/bin/orchard"
names=$("$orchard" env list --json | python3 -c 'import json,sys; print("\n".join(e["name"] for e in json.load(sys.stdin)))')
: > "$out/envs.jsonl"
for name in $names; do
  "$orchard" env bench "$name" --num-envs 1 16 256 --seconds "$secs" --json |
    python3 -c 'import json,sys; [print(json.dumps(r)) for r in json.load(sys.stdin)]' >> "$out/envs.jsonl"
done
python3 - "$out/envs.jsonl" > "$out/envs.md" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in rows:
    by.setdefault(r["env"], {})[r["num_envs"]] = r["steps_per_s_per_core"]
print("| env | N = 1 | N = 16 | N = 256 |")
print("|---|---:|---:|---:|")
fmt = lambda v: f"{v/1e6:.2f} M" if v >= 1e6 else f"{v/1e3:.0f} k"
for env, d in by.items():
    print(f"| {env} | " + " | ".join(fmt(d[n]) for n in (1, 16, 256)) + " |")
PY
cat "$out/envs.md"
"$build/bin/orchard_bench_envs" --benchmark_min_time=0.3 --benchmark_repetitions=3 \
  --benchmark_report_aggregates_only=true | tee "$out/cartpole_vs_bare.txt"
