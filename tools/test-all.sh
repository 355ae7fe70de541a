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
# The suites that need no Go program run first, while tools/go-tools.sh builds
# them in the background; each meson run prints how long it took.
# Prints the server versions it ran against, then the skipped count, and ends
# with one line "N passed, N failed"; exits non-zero when anything failed.
set -u
cd "$(dirname "$0")/.."
bash tools/install-deps.sh || exit 1

passed=0
failed=0
skipped=0
versions=()

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

# run_tests DIR NAME [MESON-TEST-ARGS...]: one meson run, counted from its own
# log (each run would overwrite meson-logs/testlog.json).
run_tests() {
        local dir=$1 name=$2
        shift 2
        rm -f "$dir/meson-logs/$name.json"
        local t0=$SECONDS
        echo "== $dir: $name"
        meson test -C "$dir" --logbase "$name" --print-errorlogs --num-processes 2 \
                --timeout-multiplier "${TIMEOUT_MULTIPLIER:-1}" "$@" || true
        count_meson "$dir/meson-logs/$name.json"
        echo "== $dir: $name took $((SECONDS - t0)) s"
}

# start_tests DIR NAME [MESON-TEST-ARGS...]: the same meson run in the
# background, its output kept; finish_tests prints and counts every run started.
started=()
start_tests() {
        local dir=$1 name=$2
        shift 2
        rm -f "$dir/meson-logs/$name.json"
        (
                t0=$SECONDS
                meson test -C "$dir" --no-rebuild --logbase "$name" --print-errorlogs --num-processes 2 \
                        --timeout-multiplier "${TIMEOUT_MULTIPLIER:-1}" "$@" >"$dir/$name.out" 2>&1
                echo "== $dir: $name took $((SECONDS - t0)) s" >>"$dir/$name.out"
        ) &
        started+=("$! $dir $name")
}
finish_tests() {
        local entry pid dir name
        for entry in "${started[@]}"; do
                read -r pid dir name <<<"$entry"
                wait "$pid"
                echo "== $dir: $name"
                cat "$dir/$name.out"
                count_meson "$dir/meson-logs/$name.json"
        done
        started=()
}

server_version() { # BINARY
        "$1" --version 2>/dev/null | sed -n 's/^nats-server: v\{0,1\}//p'
}

# The Go programs (a first build takes minutes) are built in the background,
# at a lower priority, while the suites that need none of them run: unit, cli,
# system and package, in both builds. The integration and convergence suites
# (jwtcheck checks every JWT they push) wait for them.
go_out=$(mktemp)
go_log=$(mktemp)
(
        nice -n 10 bash tools/go-tools.sh >"$go_out" 2>"$go_log"
        rc=$?
        if [ "$rc" = 0 ]; then
                jwtcheck=$(nice -n 10 bash tools/go-tools.sh local tests/jwtcheck 2>>"$go_log") || rc=1
                echo "jwtcheck - $jwtcheck" >>"$go_out"
        fi
        exit "$rc"
) &
go_pid=$!

default_server=${NATS_SERVER:-$(command -v nats-server || true)}
default_version=$( [ -n "$default_server" ] && server_version "$default_server")

built=false
if build build; then
        built=true
        run_tests build testlog-no-go --no-suite integration --no-suite convergence
else
        failed=$((failed + 1))
fi
sanitized=false
if build build-sanitize -Db_sanitize=address,undefined -Db_lundef=false; then
        sanitized=true
        # The long passes with fewer accounts: each push costs more here.
        DAEMON_TEST_LONG_PASS=5000 SYSTEST_SCALE_ACCOUNTS=25000 TIMEOUT_MULTIPLIER=3 \
                run_tests build-sanitize testlog-no-go --no-suite integration --no-suite convergence
else
        failed=$((failed + 1))
fi

# Fuzzing smoke run: each target for a few seconds, from the examples.
fuzz_t0=$SECONDS
if CC=clang meson setup build-fuzz -Dfuzz=true -Dtests=false -Dman=disabled -Db_lundef=false >build-fuzz.setup.log 2>&1 &&
        ninja -C build-fuzz >build-fuzz.build.log 2>&1; then
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
                if ./build-fuzz/fuzz/fuzz-"$target" -max_total_time="${FUZZ_SECONDS:-5}" -rss_limit_mb=1024 \
                        -print_final_stats=0 "$corpus" >build-fuzz/"$target".log 2>&1; then
                        echo "fuzz $target: OK"
                        passed=$((passed + 1))
                else
                        tail -30 build-fuzz/"$target".log
                        echo "fuzz $target: FAIL"
                        failed=$((failed + 1))
                fi
                rm -rf "$corpus"
        done
else
        tail -30 build-fuzz.setup.log build-fuzz.build.log 2>/dev/null
        echo "fuzz: build failed"
        failed=$((failed + 1))
fi
echo "== fuzz took $((SECONDS - fuzz_t0)) s"

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
rm -f "$go_out" "$go_log"
echo "== Go programs ready after $SECONDS s"

if $built; then
        run_tests build testlog --suite integration --suite convergence
        versions+=("${default_version:-none} (default${default_server:+, $default_server}: every suite, and under the sanitizers)")
        # The matrix two versions at a time (MATRIX_JOBS): the integration tests
        # mostly wait on servers and timers, each with servers of its own.
        newest=${#matrix[@]}
        for entry in "${matrix[@]}"; do
                newest=$((newest - 1))
                version=${entry%% *}
                path=${entry#* }
                # The daemon's long-pass tests test its threads, not the server: once is enough.
                DAEMON_TEST_LONG_PASS=0 NATS_SERVER=$path start_tests build "testlog-nats-$version" --suite integration
                if [ "$newest" = 0 ]; then
                        # The unit under systemd (the system suite's other tests do
                        # not use a server); its scale test with fewer accounts.
                        SYSTEST_SCALE_ACCOUNTS=25000 NATS_SERVER=$path \
                                start_tests build "testlog-nats-$version-systemd" systemd
                        # One short convergence schedule, the cluster one (the default server
                        # runs them all; the selftest checks the driver).
                        NATS_SERVER=$path start_tests build "testlog-nats-$version-convergence" convergence-cluster
                        versions+=("$version (integration, systemd, convergence)")
                else
                        versions+=("$version (integration)")
                fi
                [ "${#started[@]}" -lt "${MATRIX_JOBS:-2}" ] || finish_tests
        done
        finish_tests
fi
if $sanitized; then
        DAEMON_TEST_LONG_PASS=5000 TIMEOUT_MULTIPLIER=3 run_tests build-sanitize testlog --suite integration --suite convergence
fi


echo "nats-server versions tested against:"
for v in "${versions[@]}"; do
        echo "  $v"
done
echo "$skipped skipped; $SECONDS s in all"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
