#!/usr/bin/env bash
# Runs Orchard's benchmarks and writes raw results to BUILD_DIR/bench-results/.
# Usage: bench/run.sh [BUILD_DIR]   (the numbers are written up in docs/benchmarks.md)
set -euo pipefail
build="${1:-build}"
out="$build/bench-results"
mkdir -p "$out"
"$build/bin/orchard_bench_core" --benchmark_min_time=0.3 --benchmark_repetitions=3 \
  --benchmark_report_aggregates_only=true --benchmark_out="$out/core.json" --benchmark_out_format=json \
  | tee "$out/core.txt"
echo "results: $out/core.json"
"$build/bin/orchard_bench_learner" --benchmark_out="$out/learner.json" --benchmark_out_format=json \
  | tee "$out/learner.txt"
echo "results: $out/learner.json"
