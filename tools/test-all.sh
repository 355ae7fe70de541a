#!/usr/bin/env bash
# The whole test suite:
#   - a normal build: every test (unit, cli, integration, system) against the
#     default nats-server (Debian's, on PATH);
#   - the integration tests again against each nats-server of the matrix in
#     tools/go-pins.txt (built with Go by tools/go-tools.sh, with the nats CLI,
#     nsc and tests/jwtcheck), and the systemd tests and the cluster
#     convergence schedule against the newest of them;
#     without Go this part is skipped with one line, which is not a failure;
#   - a build under AddressSanitizer and UndefinedBehaviorSanitizer: every test
#     but the package's and the convergence schedules against the default
#     server, the long passes smaller;
#   - a short run of each fuzz target (FUZZ_SECONDS, 5 by default).
#
# Where the time goes, and how the runs overlap (2 cores is the common case):
#   - the tests that boot a systemd take turns through one machine-wide lock
#     (tests/system/sysns.py), so they run one after another in a lane of their
#     own, started first: it is the longest chain;
#   - the other meson runs (each build, suite and server version) share a pool
#     of TEST_JOBS runs (2) of TEST_PROCESSES tests each (3): most integration
#     tests wait on servers and timers, so several run side by side; the
#     longest tests start first (their meson priority);
#   - the sanitizer build compiles in the background from the start, the fuzz
#     build after it; the fuzz targets then run one after another at a lower
#     priority, beside the tests;
#   - a second lane runs the heaviest of the rest one after another, once the
#     systemd lane's 100,000-account scale test is over: the daemon's long
#     passes (suite 'long'), one at a time, then the sanitizer build's other
#     integration tests two at a time; beside each other and the scale test,
#     on 2 cores shared with others, their servers answered too late (the
#     sanitizer build's long passes end the systemd lane);
#   - the Go programs (a first build takes minutes) are built in the
#     background, at a lower priority, from the start; the runs that need none
#     of them (unit, cli, package, system) are queued first. The integration
#     and convergence suites (jwtcheck checks every JWT they push) wait for them.
# Each meson run prints how long it took; the output of each run is printed
# whole at the end, in a fixed order.
# Prints the server versions it ran against, then the skipped count, and ends
# with one line "N passed, N failed"; exits non-zero when anything failed.
set -u
cd "$(dirname "$0")/.."
bash tools/install-deps.sh || exit 1

passed=0
failed=0
skipped=0
versions=()
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

count_meson() { # LOGFILE
        local log=$1
        [ -f "$log" ] || { failed=$((failed + 1)); return; }
        local p f s
        p=$(grep -cE '"result": "(OK|EXPECTEDFAIL)"' "$log")
        f=$(grep -cE '"result": "(FAIL|TIMEOUT|ERROR|UNEXPECTEDPASS)"' "$log")
        s=$(grep -cE '"result": "SKIP"' "$log")
        passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
}

build() { # DIR MESON-OPTIONS...
        local dir=$1 t0=$SECONDS
        shift
        if [ ! -d "$dir" ]; then
                meson setup "$dir" "$@" >"$dir.setup.log" 2>&1 || { cat "$dir.setup.log"; return 1; }
        fi
        ninja -C "$dir" >"$dir.build.log" 2>&1 || { tail -50 "$dir.build.log"; return 1; }
        echo "== $dir: built in $((SECONDS - t0)) s"
}

# meson_run DIR NAME [MESON-TEST-ARGS...]: one meson run (its environment from
# the caller), its output kept in DIR/NAME.out and its results in its own log
# (each run would overwrite meson-logs/testlog.json). Registered in $work/runs,
# so that the end prints and counts every run, in the order they were queued.
register() { # DIR NAME
        rm -f "$1/meson-logs/$2.json" "$1/$2.out"
        echo "$1 $2" >>"$work/runs"
}
meson_run() {
        local dir=$1 name=$2 t0=$SECONDS
        shift 2
        meson test -C "$dir" --no-rebuild --logbase "$name" --print-errorlogs \
                --num-processes "${TEST_PROCESSES:-3}" \
                --timeout-multiplier "${TIMEOUT_MULTIPLIER:-1}" "$@" >"$dir/$name.out" 2>&1
        echo "== $dir: $name took $((SECONDS - t0)) s" >>"$dir/$name.out"
}

# queue DIR NAME [MESON-TEST-ARGS...]: meson_run in the background once fewer
# than TEST_JOBS queued runs are going.
pool=()
queue() {
        register "$1" "$2"
        while :; do
                local live=() pid
                for pid in "${pool[@]}"; do
                        kill -0 "$pid" 2>/dev/null && live+=("$pid")
                done
                pool=("${live[@]}")
                [ "${#pool[@]}" -lt "${TEST_JOBS:-2}" ] && break
                sleep 1
        done
        meson_run "$@" &
        pool+=("$!")
}

server_version() { # BINARY
        "$1" --version 2>/dev/null | sed -n 's/^nats-server: v\{0,1\}//p'
}

# The Go programs, in the background at a lower priority. When done, $work/go.done
# holds their exit status.
go_out=$work/go.out
go_log=$work/go.log
(
        nice -n 10 bash tools/go-tools.sh >"$go_out" 2>"$go_log"
        rc=$?
        if [ "$rc" = 0 ]; then
                jwtcheck=$(nice -n 10 bash tools/go-tools.sh local tests/jwtcheck 2>>"$go_log") || rc=1
                echo "jwtcheck - $jwtcheck" >>"$go_out"
        fi
        echo "$rc" >"$work/go.done"
        exit "$rc"
) &
go_pid=$!
wait_for() { # FILE: wait until it exists
        while [ ! -e "$1" ]; do sleep 1; done
}

default_server=${NATS_SERVER:-$(command -v nats-server || true)}
default_version=$( [ -n "$default_server" ] && server_version "$default_server")

built=false
if build build; then
        built=true
else
        failed=$((failed + 1))
fi

# The systemd lane: every run that boots a systemd, one after another. The
# sanitizer build and the Go programs are waited for through $work/sanitize.done
# and $work/go.env (written below).
register build testlog-systemd
register build testlog-system
register build-sanitize testlog-systemd
register build testlog-convergence-systemd
register build-sanitize testlog-long
(
        if $built; then
                # The systemd test (its scale test: 100,000 accounts), then the others
                # of the suite (systemd-config; package, whose .deb builds run before
                # it takes the lock).
                meson_run build testlog-systemd --suite scale
                touch "$work/scale.done"
                meson_run build testlog-system --suite system --no-suite scale --no-suite convergence
        fi
        touch "$work/scale.done"
        wait_for "$work/sanitize.done"
        if [ "$(cat "$work/sanitize.done")" = 0 ]; then
                # The scale test with fewer accounts: each push costs more here.
                DAEMON_TEST_LONG_PASS=5000 SYSTEST_SCALE_ACCOUNTS=25000 TIMEOUT_MULTIPLIER=3 \
                        meson_run build-sanitize testlog-systemd --suite system
        fi
        wait_for "$work/go.env"
        # shellcheck disable=SC1091
        . "$work/go.env"
        if $built; then
                meson_run build testlog-convergence-systemd convergence-systemd
                if [ -n "$NEWEST" ]; then
                        # The unit under systemd on the newest server (the system suite's other
                        # tests do not use a server); its scale test with fewer accounts.
                        SYSTEST_SCALE_ACCOUNTS=25000 NATS_SERVER=$NEWEST_PATH \
                                meson_run build "testlog-nats-$NEWEST-systemd" systemd
                fi
        fi
        # Last here, beside the heavy lane's end: the sanitizer build's long passes
        # (one at a time), the heavy lane being the longer.
        if [ "$(cat "$work/sanitize.done")" = 0 ]; then
                DAEMON_TEST_LONG_PASS=5000 TIMEOUT_MULTIPLIER=3 TEST_PROCESSES=1 \
                        meson_run build-sanitize testlog-long --suite long
        fi
) &
lane_pid=$!

# The heavy lane: the daemon's long first passes (suite 'long'), one test at
# a time, then the sanitizer build's other integration tests (its long passes
# end the systemd lane, the shorter). They keep the daemon and its servers busy:
# beside the systemd lane's scale tests and each other, on 2 cores, their
# servers answered too late (over request_timeout): they start once the
# systemd lane's 100,000-account scale test is over.
register build testlog-long
register build-sanitize testlog
(
        wait_for "$work/go.env"
        # shellcheck disable=SC1091
        . "$work/go.env"
        wait_for "$work/scale.done"
        if $built; then
                TEST_PROCESSES=1 meson_run build testlog-long --suite long
        fi
        wait_for "$work/sanitize.done"
        if [ "$(cat "$work/sanitize.done")" = 0 ]; then
                # The sanitizer build's other integration tests and its convergence
                # selftest, two at a time: beside the pool's runs their clusters
                # answered too late.
                DAEMON_TEST_LONG_PASS=5000 TIMEOUT_MULTIPLIER=3 TEST_PROCESSES=2 \
                        meson_run build-sanitize testlog --suite integration --suite convergence --no-suite long
        fi
) &
long_pid=$!

if $built; then
        queue build testlog-no-go --suite unit --suite cli --suite package
fi

# The sanitizer build, in the background; $work/sanitize.done holds its status.
(
        renice -n 5 -p "$BASHPID" >/dev/null # the systemd lane's scale test runs meanwhile
        build build-sanitize -Db_sanitize=address,undefined -Db_lundef=false >"$work/sanitize.out" 2>&1
        echo $? >"$work/sanitize.done.tmp"
        mv "$work/sanitize.done.tmp" "$work/sanitize.done"
) &

# Fuzzing smoke run: each target for a few seconds, from the examples, at a
# lower priority beside the tests. Results in $work/fuzz.results.
touch "$work/fuzz.results" "$work/fuzz.out"
(
        wait_for "$work/sanitize.done" # one compiler at a time
        t0=$SECONDS
        if CC=clang nice -n 5 meson setup build-fuzz -Dfuzz=true -Dtests=false -Dman=disabled -Db_lundef=false \
                >build-fuzz.setup.log 2>&1 && nice -n 5 ninja -C build-fuzz >build-fuzz.build.log 2>&1; then
                # Every parser of untrusted input: the files, and what the servers send.
                for target in accounts accounts-update settings serverconf fragment jwt creds \
                        reply-varz reply-statsz reply-info reply-jsz reply-accountz reply-pack reply-update; do
                        corpus=$(mktemp -d)
                        case $target in
                        accounts*) cp config/accounts.yaml "$corpus"/ ;;
                        settings) cp config/nats-accountd.conf "$corpus"/ ;;
                        serverconf) cp config/nats-server.conf "$corpus"/ ;;
                        fragment) cp config/accounts.d/APP.conf "$corpus"/ ;;
                        *) cp fuzz/corpus/"$target"/* "$corpus"/ ;;
                        esac
                        if nice -n 5 ./build-fuzz/fuzz/fuzz-"$target" -max_total_time="${FUZZ_SECONDS:-5}" \
                                -rss_limit_mb=1024 -print_final_stats=0 "$corpus" >build-fuzz/"$target".log 2>&1; then
                                echo "fuzz $target: OK" >>"$work/fuzz.out"
                                echo OK >>"$work/fuzz.results"
                        else
                                tail -30 build-fuzz/"$target".log >>"$work/fuzz.out"
                                echo "fuzz $target: FAIL" >>"$work/fuzz.out"
                                echo FAIL >>"$work/fuzz.results"
                        fi
                        rm -rf "$corpus"
                done
        else
                tail -30 build-fuzz.setup.log build-fuzz.build.log >>"$work/fuzz.out" 2>/dev/null
                echo "fuzz: build failed" >>"$work/fuzz.out"
                echo FAIL >>"$work/fuzz.results"
        fi
        echo "== fuzz took $((SECONDS - t0)) s" >>"$work/fuzz.out"
) &
fuzz_pid=$!

matrix=() # "VERSION PATH", oldest first
wait "$go_pid"
go_rc=$?
if [ "$go_rc" = 77 ]; then
        cat "$go_log" # its one line: no Go, so no matrix and no Go oracles
elif [ "$go_rc" != 0 ]; then
        tail -30 "$go_log"
        echo "go-tools: building the Go test programs failed; the nats-server matrix is not run"
        failed=$((failed + 1))
else
        while read -r name version path; do
                case $name in
                nats-server) matrix+=("${version#v} $path") ;;
                nats) export NATS_CLI=$path ;;
                nsc) export NSC=$path ;;
                jwtcheck) export JWTCHECK=$path ;;
                esac
        done <"$go_out"
        mapfile -t matrix < <(printf '%s\n' "${matrix[@]}" | sort -V)
fi
echo "== Go programs ready after $SECONDS s"
newest=
[ "${#matrix[@]}" = 0 ] || newest=${matrix[${#matrix[@]}-1]}
# The lane's run on the newest server, registered before the lane may start it.
[ -z "$newest" ] || ! $built || register build "testlog-nats-${newest%% *}-systemd"
# For the systemd lane: the oracles and the newest server.
{
        printf 'export NATS_CLI=%q NSC=%q JWTCHECK=%q\n' "${NATS_CLI:-}" "${NSC:-}" "${JWTCHECK:-}"
        printf 'NEWEST=%q NEWEST_PATH=%q\n' "${newest%% *}" "${newest#* }"
} >"$work/go.env.tmp"
mv "$work/go.env.tmp" "$work/go.env"

if $built; then
        # Every integration test and convergence schedule (convergence-systemd is in
        # the systemd lane).
        queue build testlog --suite integration --suite convergence --no-suite system --no-suite long
        versions+=("${default_version:-none} (default${default_server:+, $default_server}: every suite, and under the sanitizers)")
fi
for entry in "${matrix[@]}"; do
        $built || break
        version=${entry%% *}
        path=${entry#* }
        # The daemon's long-pass tests test its threads, not the server: once is enough.
        DAEMON_TEST_LONG_PASS=0 NATS_SERVER=$path queue build "testlog-nats-$version" --suite integration
        if [ "$entry" = "$newest" ]; then
                # One short convergence schedule, the cluster one (the default server
                # runs them all; the selftest checks the driver); systemd in its lane.
                NATS_SERVER=$path queue build "testlog-nats-$version-convergence" convergence-cluster
                versions+=("$version (integration, systemd, convergence)")
        else
                versions+=("$version (integration)")
        fi
done

wait_for "$work/sanitize.done"
cat "$work/sanitize.out"
if [ "$(cat "$work/sanitize.done")" = 0 ]; then
        DAEMON_TEST_LONG_PASS=5000 TIMEOUT_MULTIPLIER=3 \
                queue build-sanitize testlog-no-go --suite unit --suite cli
else
        failed=$((failed + 1))
fi

wait "${pool[@]}" "$lane_pid" "$long_pid" "$fuzz_pid" 2>/dev/null
while read -r dir name; do
        [ -e "$dir/$name.out" ] || continue # not run: its build failed (counted there)
        echo "== $dir: $name"
        cat "$dir/$name.out"
        count_meson "$dir/meson-logs/$name.json"
done <"$work/runs"
cat "$work/fuzz.out"
fuzz_ok=$(grep -c '^OK$' "$work/fuzz.results")
fuzz_failed=$(grep -c '^FAIL$' "$work/fuzz.results")
[ $((fuzz_ok + fuzz_failed)) -gt 0 ] || { echo "fuzz: no result"; fuzz_failed=1; }
passed=$((passed + fuzz_ok))
failed=$((failed + fuzz_failed))

echo "nats-server versions tested against:"
for v in "${versions[@]}"; do
        echo "  $v"
done
echo "$skipped skipped; $SECONDS s in all"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
