#!/usr/bin/env bash
# End-to-end learning benchmarks through real processes (`orchard run`: one replay shard, one
# learner, actors), each run's result.json summarised as one line.
#   bench/runs.sh [BUILD_DIR] [ppo|sac|apt|all] [SEEDS]
# ppo: examples/quickstart.yaml, env steps and wall-clock to evaluation mean >= 475 per seed.
# sac: examples/sac-pendulum.yaml with no target, evaluation return at 20 k env steps.
# apt: wall-clock to evaluation mean >= -200 on Pendulum-v1: synchronous SAC (1 actor, collect
#      then update) versus APT with 1, 2 and 4 actors, all at update-to-data ratio 1.
# aptslow: the same comparison with a slow simulator (Pendulum-v1 with step_delay_us=5000: each
#      env step also waits 5 ms, time spent outside this machine's CPUs) and 64-64 networks, so
#      the learner is not the bottleneck and actor scaling can show.
# Results in docs/benchmarks.md.
set -euo pipefail
build="${1:-build}"
what="${2:-all}"
seeds="${3:-3}"
out="$build/bench-results/runs"
mkdir -p "$out"
orchard="$build/bin/orchard"

summary() {  # label run_dir
  python3 - "$1" "$2" <<'PY'
import json, sys
r = json.load(open(sys.argv[2] + "/result.json"))
print(f"{sys.argv[1]:<28} reason={r['reason']:<14} env_steps={r['env_steps']:>7} updates={r['updates']:>6} "
      f"learner_s={r['seconds']:7.1f} eval_mean={r['eval_mean']}")
PY
}

run() {  # label spec args...
  local label="$1" spec="$2"; shift 2
  local dir="$out/$label"
  rm -rf "$dir"
  local t0=$(date +%s%N)
  "$orchard" run "$spec" -q --set "run_dir=$dir" "$@" > "$dir.log" 2>&1 || true
  local t1=$(date +%s%N)
  echo "$(summary "$label" "$dir") wall_s=$(( (t1 - t0) / 1000000000 ))" | tee -a "$out/summary.txt"
}

if [[ "$what" == ppo || "$what" == all ]]; then
  for s in $(seq 1 "$seeds"); do run "ppo-cartpole-seed$s" examples/quickstart.yaml --set seed=$s; done
fi
if [[ "$what" == sac || "$what" == all ]]; then
  for s in $(seq 1 "$seeds"); do
    run "sac-pendulum-20k-seed$s" examples/sac-pendulum.yaml --set seed=$s --set budget.env_steps=20000 \
      --set budget.target_return=1000 --set learner.eval_every=2000
  done
fi
if [[ "$what" == apt || "$what" == all ]]; then
  for s in $(seq 1 "$seeds"); do
    run "sync-sac-1actor-seed$s" examples/apt-pendulum.yaml --set seed=$s --set algorithm=sac --set actors.count=1 \
      --set sac.max_steps_ahead=0 --set sac.publish_every=1
    for n in 1 2 4; do
      run "apt-${n}actors-seed$s" examples/apt-pendulum.yaml --set seed=$s --set actors.count=$n
    done
  done
fi
if [[ "$what" == aptslow ]]; then
  slow=(--set env.options.step_delay_us=5000 --set learner.eval_options.step_delay_us=0 --set "sac.actor_hidden=[64, 64]" --set "sac.critic_hidden=[64, 64]"
        --set budget.env_steps=60000)
  for s in $(seq 1 "$seeds"); do
    run "slow-sync-sac-1actor-seed$s" examples/apt-pendulum.yaml --set seed=$s --set algorithm=sac \
      --set actors.count=1 --set sac.max_steps_ahead=0 --set sac.publish_every=1 "${slow[@]}"
    for n in 1 2 4; do
      run "slow-apt-${n}actors-seed$s" examples/apt-pendulum.yaml --set seed=$s --set actors.count=$n "${slow[@]}"
    done
  done
fi
