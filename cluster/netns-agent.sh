#!/usr/bin/env bash
# OpenMPI "remote shell" for the multi-host test: instead of ssh HOST CMD, run CMD inside the
# network namespace that owns HOST's address (table in $ELIP_NETNS_MAP: "ip=ns ip=ns ...").
set -euo pipefail
host=$1
shift
ns=""
for pair in ${ELIP_NETNS_MAP:?ELIP_NETNS_MAP not set}; do
    [[ ${pair%%=*} == "$host" ]] && ns=${pair#*=}
done
[[ -n $ns ]] || { echo "netns-agent: no namespace for host $host" >&2; exit 255; }
# A temporary folder of its own per "host" (see test-netns.sh): OpenMPI's session directories of
# daemons on one filesystem with one host name would otherwise collide.
if [[ -n ${ELIP_NETNS_TMPDIR:-} ]]; then
    tmp=$ELIP_NETNS_TMPDIR/$ns
    mkdir -p "$tmp"
    exec ip netns exec "$ns" env TMPDIR="$tmp" OMPI_MCA_orte_tmpdir_base="$tmp" /bin/sh -c "$*"
fi
exec ip netns exec "$ns" /bin/sh -c "$*"
