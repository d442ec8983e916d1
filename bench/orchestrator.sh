#!/usr/bin/env bash
# Orchestrator overhead (docs/benchmarks.md):
#  1. time from `orchard run examples/quickstart.yaml` to the learner's first gradient step;
#  2. end-to-end env steps/s of the quickstart (fixed env-step budget, no target) versus the sum
#     of the throughputs of the same two actors run stand-alone, concurrently, against a shard
#     whose table never blocks — measured in this same invocation.
#   bench/orchestrator.sh [BUILD_DIR] [ENV_STEPS] [extra --set arguments for both ...]
# e.g. a simulator that costs 200 us of CPU per step (CartPole's step_cost_us option):
#   bench/orchestrator.sh build 300000 --set env.options.step_cost_us=200
set -euo pipefail
build="${1:-build}"
steps="${2:-300000}"
shift 2 || true
out="$build/bench-results/orchestrator"
rm -rf "$out"
mkdir -p "$out"
bin="$build/bin"
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# 1 + 2a: the run itself.
t0=$(now_ms)
"$bin/orchard" run examples/quickstart.yaml -q --set "run_dir=$out/run" --set "budget.env_steps=$steps" \
  --set budget.target_return=1e9 --set budget.wall_time_s=600 "$@" > "$out/run.log" 2>&1 || true
python3 - "$out/run/result.json" "$t0" > "$out/run.txt" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); t0 = int(sys.argv[2])
print(f"first_gradient_step_after_s={(r['first_update_unix_ms'] - t0) / 1000:.2f}")
print(f"run_env_steps={r['env_steps']} learner_seconds={r['seconds']:.2f} "
      f"run_env_steps_per_s={r['env_steps'] / r['seconds']:.0f} updates={r['updates']}")
PY
cat "$out/run.txt"

# 2b: the same actors alone: one shard with a plain FIFO table (no rate limiter, large), both
# actors at once, as long as the run lasted.
spec="$out/run/spec.yaml"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin/orchard-replay" --config "$spec" --bind "tcp://127.0.0.1:$port" --set replay.tables[0].max_size=2000000 \
  --set replay.tables[0].samples_per_insert=0 --set replay.tables[0].max_times_sampled=0 \
  --set replay.checkpoint_interval_s=0 > "$out/shard.log" 2>&1 &
shard=$!
sleep 1
# The same env options for the stand-alone actors (--set env.options.K=V -> -o K=V).
env_opts=()
for a in "$@"; do
  case "$a" in env.options.*=*) env_opts+=(-o "${a#env.options.}") ;; esac
done
num_envs=$(awk '/^  num_envs:/ {print $2; exit}' "$spec")
seg=$(awk '/^  segment_length:/ {print $2; exit}' "$spec")
vsteps=$(( steps / 2 / num_envs ))
for a in 0 1; do
  "$bin/orchard-actor" --env CartPole-v1 "${env_opts[@]}" --num-envs "$num_envs" --segment-length "$seg" \
    --replay "tcp://127.0.0.1:$port" --table segments --actor-id $a --steps "$vsteps" --report-s 1000 \
    > "$out/actor-$a.log" 2>&1 &
done
wait %2 %3 2>/dev/null || wait
kill -TERM $shard; wait $shard || true
python3 - "$out" <<'PY' | tee -a "$out/run.txt"
import re, sys
tot = 0
for a in (0, 1):
    m = re.search(r"done: (\d+) env steps.* (\d+) env steps/s", open(f"{sys.argv[1]}/actor-{a}.log").read())
    print(f"standalone_actor_{a}_env_steps_per_s={m.group(2)}"); tot += int(m.group(2))
run = float(re.search(r"run_env_steps_per_s=(\d+)", open(f"{sys.argv[1]}/run.txt").read()).group(1))
print(f"standalone_sum_env_steps_per_s={tot} ratio_run_over_standalone={run / tot:.3f}")
PY
