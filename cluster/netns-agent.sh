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
exec ip netns exec "$ns" /bin/sh -c "$*"
