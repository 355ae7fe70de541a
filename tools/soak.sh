#!/usr/bin/env bash
# A long convergence run: random schedules of edits and faults back to back
# (tests/convergence/converge.py) for M minutes, against a standalone server
# and a 3-node cluster, in operator mode and config mode, with the daemon plain
# and under a booted systemd (root only; operator mode), on Debian's
# nats-server and every server of the matrix when Go is there. Prints the seed
# first and the figures last (steps, faults of each kind, violations, time to converge after the last fault: p50/p99/max); a
# violation prints its seed, the schedule and the shortest one that still
# fails, saved under the output folder with the command that replays it.
#
#   tools/soak.sh --minutes 60 [--seed N] [--build DIR] [--out DIR] [--default-server-only]
#                 [--topology standalone|cluster|mixed] [--runner plain|systemd|mixed]
#                 [--mode operator|config|mixed] [-- MORE converge.py ARGS]
#
# The machine is shared: run it under nice. Exit status: that of converge.py.
set -u
cd "$(dirname "$0")/.."
minutes=10 seed=$(( $(date +%s) % 1000000 )) builddir=build out= default_only= topology=mixed runner=mixed mode=mixed
while [ $# -gt 0 ]; do
        case $1 in
        --minutes) minutes=$2; shift 2 ;;
        --seed) seed=$2; shift 2 ;;
        --build) builddir=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --topology) topology=$2; shift 2 ;;
        --runner) runner=$2; shift 2 ;;
        --mode) mode=$2; shift 2 ;;
        --default-server-only) default_only=1; shift ;;
        --) shift; break ;;
        *) echo "usage: tools/soak.sh --minutes M [--seed N] [--build DIR] [--out DIR] [--default-server-only]" \
                "[--topology T] [--runner R] [--mode M] [-- converge.py args]" >&2; exit 64 ;;
        esac
done
[ -d "$builddir" ] || meson setup "$builddir" >/dev/null || exit 1
ninja -C "$builddir" >/dev/null || { echo "soak: build failed (ninja -C $builddir)" >&2; exit 1; }
out=${out:-$(mktemp -d /tmp/nats-accountd-soak.XXXXXX)}
mkdir -p "$out"

servers=$(command -v nats-server || true)
if [ -z "$default_only" ] && matrix=$(bash tools/go-tools.sh servers 2>/dev/null); then
        while read -r _ path; do servers="$servers,$path"; done <<<"$matrix"
        export JWTCHECK=${JWTCHECK:-$(bash tools/go-tools.sh local tests/jwtcheck 2>/dev/null)}
fi
servers=${servers#,}

case $builddir in /*) ;; *) builddir=$PWD/$builddir ;; esac
export NATS_ACCOUNTD=$builddir/nats-accountd NATS_PROBE=$builddir/tests/nats-probe
export NATS_ACCOUNTD_UNIT=$builddir/systemd/nats-accountd.service PYTHONDONTWRITEBYTECODE=1
echo "soak: $minutes min, seed $seed, servers $servers, output in $out"
exec python3 tests/convergence/converge.py --minutes "$minutes" --seed "$seed" --steps 40 \
        --topology "$topology" --runner "$runner" --mode "$mode" --servers "$servers" --out "$out" \
        --figures "$out/figures.json" "$@"
