#!/usr/bin/env bash
# Launches `elip train` (or any elip subcommand) over several hosts with OpenMPI.
#
#   cluster/launch.sh --hostfile cluster/hosts --ranks-per-node 2 --threads-per-rank 16 \
#       [--iface eth0] [--bind core|socket|none] [--stop-grace S] [--dry-run] -- train --config configs/pretrain-albef-4m.yaml ...
#
# SIGTERM/SIGINT/SIGHUP to this script (a scheduler, Ctrl-C) are passed to mpirun as SIGUSR1, which
# OpenMPI forwards: every rank finishes its step, rank 0 checkpoints, the ranks exit. Only when they
# have not within --stop-grace seconds (default 300) does mpirun get SIGTERM. Exit status: mpirun's,
# or 128 + the signal (143 SIGTERM, 130 SIGINT) when a signal stopped a run that checkpointed.
# (SIGTERM sent to mpirun itself gives ranks odls_base_sigkill_timeout seconds, set to 30 here;
# OpenMPI's default is 1.)
#
# Every rank gets ELIP_THREADS=threads-per-rank (BLAS and the engine's loops) and is bound to
# that many cores (--map-by ppr:R:node:PE=T). --iface pins both MPI's data (btl_tcp) and its
# control channel (oob_tcp) to one network, which matters on hosts with several (e.g. a slow
# management network next to a fast one). `elip` must be at the same path on every host.
set -euo pipefail
HOSTFILE="" RPN=1 TPR="" TPR_GIVEN=0 IFACE="" BIND=core DRY=0 ELIP_BIN=${ELIP_BIN:-$(command -v elip || echo "$(cd "$(dirname "$0")/.." && pwd)/.build/release/elip")}
STOP_GRACE=300
usage() { sed -n '2,19p' "$0"; exit "${1:-0}"; }
# An option's value: present and not the next option (set -u would otherwise stop with "unbound variable").
need() { [[ $# -ge 2 && $2 != --* ]] || { echo "launch.sh: $1 needs a value" >&2; exit 2; }; }
# Counts are checked as plain positive integers before any use: bash evaluates $(( )) operands as
# expressions, so a value such as 'a[$(cmd)]' would run cmd.
positive() { [[ $2 =~ ^[1-9][0-9]{0,5}$ ]] || { echo "launch.sh: $1 must be a positive integer, got '$2'" >&2; exit 2; }; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --hostfile|--ranks-per-node|--threads-per-rank|--iface|--bind|--elip|--stop-grace) need "$@" ;;
    esac
    case $1 in
        --hostfile) HOSTFILE=$2; shift 2 ;;
        --ranks-per-node) RPN=$2; shift 2 ;;
        --threads-per-rank) TPR=$2; TPR_GIVEN=1; shift 2 ;;
        --iface) IFACE=$2; shift 2 ;;
        --bind) BIND=$2; shift 2 ;;
        --elip) ELIP_BIN=$2; shift 2 ;;
        --stop-grace) STOP_GRACE=$2; shift 2 ;;
        --dry-run) DRY=1; shift ;;
        -h|--help) usage 0 ;;
        --) shift; break ;;
        *) echo "launch.sh: unknown option $1" >&2; usage 2 ;;
    esac
done
[[ $# -gt 0 ]] || { echo "launch.sh: give the elip arguments after --" >&2; usage 2; }
[[ -n $HOSTFILE && -f $HOSTFILE ]] || { echo "launch.sh: --hostfile FILE is required (see cluster/hosts.example)" >&2; exit 2; }
[[ -x $ELIP_BIN ]] || { echo "launch.sh: elip not found at $ELIP_BIN (make build, or --elip PATH)" >&2; exit 2; }
positive --ranks-per-node "$RPN"
[[ $TPR_GIVEN -eq 0 ]] || positive --threads-per-rank "$TPR"
NODES=$(grep -cvE '^\s*(#|$)' "$HOSTFILE" || true)
[[ $NODES -ge 1 ]] || { echo "launch.sh: $HOSTFILE lists no hosts" >&2; exit 2; }
if [[ -z $TPR ]]; then TPR=$(( $(nproc) / RPN )); [[ $TPR -ge 1 ]] || TPR=1; fi
NP=$(( NODES * RPN ))
[[ $STOP_GRACE =~ ^[0-9]+$ ]] || { echo "launch.sh: --stop-grace takes whole seconds, got '$STOP_GRACE'" >&2; exit 2; }
CMD=(mpirun --hostfile "$HOSTFILE" -np "$NP" -x ELIP_THREADS="$TPR" -x OPENBLAS_NUM_THREADS="$TPR"
     --mca odls_base_sigkill_timeout 30)
case $BIND in
    core) CMD+=(--map-by "ppr:$RPN:node:PE=$TPR" --bind-to core) ;;
    socket) CMD+=(--map-by "ppr:$RPN:node" --bind-to socket) ;;
    none) CMD+=(--map-by "ppr:$RPN:node" --bind-to none) ;;
    *) echo "launch.sh: --bind core|socket|none" >&2; exit 2 ;;
esac
if [[ -n $IFACE ]]; then CMD+=(--mca btl_tcp_if_include "$IFACE" --mca oob_tcp_if_include "$IFACE"); fi
[[ $(id -u) -ne 0 ]] || CMD+=(--allow-run-as-root)
CMD+=("$ELIP_BIN" "$@" --threads "$TPR")
echo "launch.sh: $NODES node(s) x $RPN rank(s) x $TPR thread(s) = $NP ranks"
echo "+ ${CMD[*]}"
[[ $DRY -eq 0 ]] || exit 0
"${CMD[@]}" &
MPIRUN_PID=$!
STOP_SIGNAL=""
stop() {  # stop SIGNAL-NAME NUMBER: ask the ranks to checkpoint and stop; SIGTERM after the grace
    [[ -z $STOP_SIGNAL ]] || return 0
    STOP_SIGNAL=$2
    echo "launch.sh: $1: asking the ranks to checkpoint and stop (SIGUSR1 to mpirun); SIGTERM in ${STOP_GRACE}s if they have not" >&2
    kill -USR1 "$MPIRUN_PID" 2>/dev/null || true
    # The timer's sleep dies with it (killed below when mpirun ends first): an orphaned sleep
    # would hold launch.sh's stdout and stderr open, and whoever reads them would wait it out.
    ( sleep "$STOP_GRACE" </dev/null >/dev/null 2>&1 & timer=$!
      trap 'kill "$timer" 2>/dev/null; exit 0' TERM
      wait "$timer" && kill -0 "$MPIRUN_PID" 2>/dev/null && echo "launch.sh: still running after ${STOP_GRACE}s: SIGTERM to mpirun" >&2 &&
        kill -TERM "$MPIRUN_PID" 2>/dev/null ) &
    GRACE_PID=$!
}
trap 'stop SIGTERM 15' TERM
trap 'stop SIGINT 2' INT
trap 'stop SIGHUP 1' HUP
GRACE_PID=""
# wait returns early when a trapped signal arrives: wait again until mpirun has ended, then take
# its status (bash keeps the status of a reaped child).
while kill -0 "$MPIRUN_PID" 2>/dev/null; do wait "$MPIRUN_PID" || true; done
rc=0
wait "$MPIRUN_PID" || rc=$?
[[ -z $GRACE_PID ]] || kill "$GRACE_PID" 2>/dev/null || true
if [[ -n $STOP_SIGNAL && $rc -eq 0 ]]; then
    echo "launch.sh: stopped by a signal after the ranks checkpointed; exit $((128 + STOP_SIGNAL))" >&2
    exit $((128 + STOP_SIGNAL))
fi
exit "$rc"
