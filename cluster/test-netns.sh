#!/usr/bin/env bash
# A real multi-host run on one machine: two network namespaces ("hosts") joined by veth pairs to a
# bridge, one MPI rank per namespace, OpenMPI's remote launch through `ip netns exec` instead of
# ssh, and shared memory disabled (btl self,tcp) so every byte between ranks crosses TCP between
# namespaces. It trains a few steps and checks the weights equal those of the same run with both
# ranks in one namespace. Skips (exit 0, with a message) where namespaces cannot be created.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests-mpi/common.sh netns

PREFIX=elip$$
NETS=("${PREFIX}a" "${PREFIX}b")
BRIDGE=br$$
cleanup() {
    for ns in "${NETS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    ip link del "$BRIDGE" 2>/dev/null || true
}
trap cleanup EXIT
# One run at a time per machine: two runs (two clones, parallel CI jobs) would otherwise put
# bridges with overlapping addresses into the one root namespace, and packets for one run's
# "hosts" could be routed to the other run's.
exec 9>"${TMPDIR:-/tmp}/elip-test-netns.lock"
flock -w 900 9 || { echo "netns: FAIL: another test-netns.sh held the lock for 15 minutes"; exit 1; }
# Bridges of earlier runs that were killed before their cleanup (SIGKILL, a lost CI job) keep
# their 10.231.x.1/24 routes in the root namespace: remove those of processes that are gone.
for dev in $(ip -o link show type bridge 2>/dev/null | awk -F': ' '{print $2}' | grep -E '^br[0-9]+$' || true); do
    pid=${dev#br}
    if ! kill -0 "$pid" 2>/dev/null && ip -o addr show dev "$dev" | grep -q ' 10\.231\.'; then
        echo "netns: removing $dev and namespaces elip${pid}a/b left by an earlier run (pid $pid is gone)"
        ip link del "$dev" 2>/dev/null || true
        ip netns del "elip${pid}a" 2>/dev/null || true
        ip netns del "elip${pid}b" 2>/dev/null || true
    fi
done
# A /24 that nothing in the root namespace routes yet, so every packet to these "hosts" goes
# through this run's bridge.
SUBNET=""
for third in $(seq 7 250); do
    if ! ip -o route show 2>/dev/null | grep -q "^10\.231\.$third\."; then SUBNET=10.231.$third; break; fi
done
[[ -n $SUBNET ]] || { echo "netns: FAIL: no free 10.231.x.0/24 subnet"; exit 1; }
IPS=("$SUBNET.2" "$SUBNET.3")
if ! ip netns add "${NETS[0]}" 2>/dev/null; then
    echo "netns: SKIPPED: cannot create network namespaces here (needs root and CAP_SYS_ADMIN)"
    echo "netns: 0 passed, 0 failed, 1 skipped"
    exit 0
fi
ip netns add "${NETS[1]}"
ip link add "$BRIDGE" type bridge
ip addr add "$SUBNET.1/24" dev "$BRIDGE"
ip link set "$BRIDGE" up
for i in 0 1; do
    ns=${NETS[$i]}
    ip link add "v$$h$i" type veth peer name "v$$n$i"
    ip link set "v$$h$i" master "$BRIDGE" up
    ip link set "v$$n$i" netns "$ns"
    ip -n "$ns" addr add "${IPS[$i]}/24" dev "v$$n$i"
    ip -n "$ns" link set "v$$n$i" up
    ip -n "$ns" link set lo up
done

# Wait until both links forward (bridge port state 3) and are up inside their namespaces: an
# mpirun started while a port is still coming up can fail to reach the second host's daemon.
for _ in $(seq 1 100); do
    ready=1
    for i in 0 1; do
        [[ $(cat "/sys/class/net/v$$h$i/brport/state" 2>/dev/null) == 3 ]] || ready=0
        ip -n "${NETS[$i]}" link show "v$$n$i" 2>/dev/null | grep -q "state UP" || ready=0
    done
    [[ $ready -eq 1 ]] && break
    sleep 0.1
done

cat >"$W/hosts" <<HOSTS
${IPS[0]} slots=1
${IPS[1]} slots=1
HOSTS
tiny_config "$W/t.yaml" "max_steps: 3, checkpoint_every: 3, log_every: 1, seed: 11, dropout: false"
ROOT=()
if [[ $(id -u) -eq 0 ]]; then ROOT=(--allow-run-as-root); export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export ELIP_NETNS_MAP="${IPS[0]}=${NETS[0]} ${IPS[1]}=${NETS[1]}"
# Each "host" gets its own temporary folder for OpenMPI's session directories (netns-agent.sh).
# Real hosts each have their own /tmp; here the namespaces share one filesystem and one host
# name, so mpirun and both daemons created the same /tmp/ompi.HOST.UID/jf.N/... tree at once, and
# one daemon now and then lost that mkdir race ("Directory: /tmp/ompi.vm.0/jf.6939/0, Error: File
# exists", orte_init failed), which mpirun reported as "ORTE does not know how to route a message
# to the specified daemon" before crashing (exit 139).
export ELIP_NETNS_TMPDIR="$W"
args=(train --config "$W/t.yaml" --vocab "$PWD/$VOCAB" --threads 1)

# Two hosts: mpirun in the root namespace; both ranks launched through the agent.
bytes_before=$(cat "/sys/class/net/v$$h1/statistics/rx_bytes")
two_hosts() {
    timeout -k 5 300 mpirun "${ROOT[@]}" --hostfile "$W/hosts" -np 2 --map-by node \
        --mca plm_rsh_agent "$PWD/cluster/netns-agent.sh" -x ELIP_NETNS_MAP \
        --mca btl self,tcp --mca btl_tcp_if_include "$SUBNET.0/24" --mca oob_tcp_if_include "$SUBNET.0/24" \
        "$ELIP" "${args[@]}" --out "$W/hosts-run" >"$W/netns.log" 2>&1
}
rc=0
two_hosts || rc=$?
if [[ $rc -ne 0 ]]; then
    echo "netns: FAIL: the two-namespace run exited $rc"; tail -25 "$W/netns.log"
    echo "netns: 0 passed, 1 failed"; exit 1
fi
# The second host's link carried the traffic (the model broadcast alone is ~10 MB).
crossed=$(( $(cat "/sys/class/net/v$$h1/statistics/rx_bytes") - bytes_before ))
if [[ $crossed -lt 5000000 ]]; then
    echo "netns: FAIL: only $crossed bytes crossed the second host's link"; echo "netns: 0 passed, 1 failed"; exit 1
fi
# Same run, both ranks in one namespace (the default transports).
timeout -k 5 300 mpirun "${ROOT[@]}" --oversubscribe --bind-to none -np 2 "$ELIP" "${args[@]}" --out "$W/local-run" \
    >"$W/local.log" 2>&1 || { echo "netns: FAIL: the single-namespace run failed"; tail -20 "$W/local.log"; exit 1; }
ck=checkpoints/step-00000003/model.safetensors
if "$ELIP" diff-weights "$W/hosts-run/$ck" "$W/local-run/$ck" >"$W/diff.log" 2>&1; then
    echo "netns: PASS: 2 ranks in 2 namespaces over TCP ($((crossed / 1000000)) MB crossed the link) == 2 ranks in one namespace ($(tail -1 "$W/diff.log"))"
    echo "netns: 1 passed, 0 failed"
    rm -rf "$W"
else
    echo "netns: FAIL: weights differ"; tail -5 "$W/diff.log"
    echo "netns: 0 passed, 1 failed"; exit 1
fi
