#!/usr/bin/env bash
# Multi-host start-up over a slow control link (docs/benchmarks.md, "Multi-host start-up"). Two
# network namespaces are the hosts (veth pairs to the root namespace), one `orchard agent` in
# each; the replay shard and the learner on host a, ACTORS actors on host b, the orchestrator in
# the root namespace. The orchestrator reaches each agent through a TCP relay that holds every
# chunk DELAY_MS in each direction (this kernel has no netem), so a request to an agent takes
# 2 x DELAY_MS more, as to a VM in another region; the run's own traffic goes direct. Each run trains 40 updates; printed per run: the time from `orchard run` to
# every process ready and to the learner's first gradient step, the whole run, and the stop
# (from the learner's result file, written as it finishes, to the command's exit).
#   bench/multihost.sh [BUILD_DIR] [DELAY_MS] [ACTORS] [RUNS] [ORCHESTRATOR]
# ORCHESTRATOR: the `orchard` binary that orchestrates (default BUILD_DIR/bin/orchard; another
# build's, to compare orchestrators); the agents and the run's processes come from BUILD_DIR.
# Needs root (ip netns).
set -euo pipefail
build="$(cd "${1:-build}" && pwd)"
delay="${2:-20}"
actors="${3:-6}"
runs="${4:-3}"
orchard="${5:-$build/bin/orchard}"
out="$build/bench-results/multihost"
rm -rf "$out"
mkdir -p "$out"
tag=$$
ns=(mhA$tag mhB$tag)
ips=(10.231.1.2 10.231.2.2)
roots=(10.231.1.1 10.231.2.1)
token="$out/token"
echo "multihost-bench-token-0123456789" > "$token"
chmod 600 "$token"
pids=()
old_forward=$(sysctl -n net.ipv4.ip_forward)
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for n in "${ns[@]}"; do
    for p in $(ip netns pids "$n" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
    ip netns del "$n" 2>/dev/null || true
  done
  ip link del "mo$tag"0 2>/dev/null || true
  ip link del "mo$tag"1 2>/dev/null || true
  sysctl -qw net.ipv4.ip_forward="$old_forward"
}
trap cleanup EXIT
for i in 0 1; do
  o="mo$tag$i"
  n="mi$tag$i"
  ip netns add "${ns[$i]}"
  ip link add "$o" type veth peer name "$n"
  ip link set "$n" netns "${ns[$i]}"
  ip addr add "${roots[$i]}/24" dev "$o"
  ip link set "$o" up
  ip netns exec "${ns[$i]}" ip addr add "${ips[$i]}/24" dev "$n"
  ip netns exec "${ns[$i]}" ip link set "$n" up
  ip netns exec "${ns[$i]}" ip link set lo up
  ip netns exec "${ns[$i]}" ip route add default via "${roots[$i]}"
  ip netns exec "${ns[$i]}" "$build/bin/orchard" agent --listen "tcp://${ips[$i]}:7070" --token-file "$token" \
    --state-dir "$out/agent-$i" --advertise "${ips[$i]}" > "$out/agent-$i.log" 2>&1 &
  pids+=($!)
done
sysctl -qw net.ipv4.ip_forward=1
# The delaying relays: 127.0.0.1:<relay port i> -> agent i.
relay_ports=()
for i in 0 1; do
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  relay_ports+=("$port")
  python3 - "$port" "${ips[$i]}" 7070 "$delay" > "$out/relay-$i.log" 2>&1 <<'PY' &
import asyncio, sys
listen_port, host, port, delay = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4]) / 1000

async def pipe(reader, writer):
    # Every chunk goes out `delay` after it came in, in order.
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()
    async def send():
        while True:
            t, data = await queue.get()
            wait = t + delay - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                writer.close()
                return
            writer.write(data)
            await writer.drain()
    sender = asyncio.create_task(send())
    try:
        while True:
            data = await reader.read(65536)
            queue.put_nowait((loop.time(), data))
            if not data:
                break
    except ConnectionError:
        queue.put_nowait((loop.time(), b""))
    await sender

async def client(reader, writer):
    try:
        up_reader, up_writer = await asyncio.open_connection(host, port)
    except OSError:
        writer.close()
        return
    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)

async def main():
    server = await asyncio.start_server(client, "127.0.0.1", listen_port)
    async with server:
        await server.serve_forever()

asyncio.run(main())
PY
  pids+=($!)
done
sleep 1
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
for r in $(seq 1 "$runs"); do
  spec="$out/spec-$r.yaml"
  cat > "$spec" <<EOF
name: mh-$r-$tag
seed: 4
env: {name: CartPole-v1, num_envs: 4}
ppo: {segment_length: 32}
learner: {eval_every: 1000, checkpoint_every_s: 60, report_every_s: 1}
actors: {count: $actors, report_every_s: 1}
budget: {updates: 40}
run_dir: $out/run-$r
orchestrator_address: ${roots[0]}
hosts:
  - {name: a, agent: 'tcp://127.0.0.1:${relay_ports[0]}', token_file: $token, address: ${ips[0]}}
  - {name: b, agent: 'tcp://127.0.0.1:${relay_ports[1]}', token_file: $token, address: ${ips[1]}}
placement: {replay: [a], learner: a, actors: [b]}
EOF
  t0=$(now_ms)
  ORCHARD_HOME="$out/home" "$orchard" run "$spec" > "$out/run-$r.log" 2>&1 || { tail -20 "$out/run-$r.log"; exit 1; }
  t1=$(now_ms)
  python3 - "$out/run-$r/result.json" "$t0" "$t1" "$out/run-$r.log" "$out/agent-0/runs/mh-$r-$tag/result.json" <<'PY'
import json, os, re, sys
r = json.load(open(sys.argv[1])); t0, t1 = int(sys.argv[2]), int(sys.argv[3])
ready = re.search(r"all processes ready after ([0-9.]+) s", open(sys.argv[4]).read())
# The learner writes result.json on host a as it finishes: from then to the command's exit is
# the ordered stop (actors, the learner's exit, the shard) and the end-of-run sweep.
learner_done_ms = os.stat(sys.argv[5]).st_mtime_ns // 1000000
print(f"ready_after_s={float(ready.group(1)):.2f} first_gradient_step_after_s={(r['first_update_unix_ms'] - t0) / 1000:.2f} "
      f"run_s={(t1 - t0) / 1000:.2f} stop_s={(t1 - learner_done_ms) / 1000:.2f}")
PY
done
