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
#     against the default server but the convergence schedules and the package;
#   - a short run of each fuzz target.
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
        local dir=$1
        shift
        if [ ! -d "$dir" ]; then
                meson setup "$dir" "$@" >"$dir.setup.log" 2>&1 || { cat "$dir.setup.log"; return 1; }
        fi
        ninja -C "$dir" >"$dir.build.log" 2>&1 || { tail -50 "$dir.build.log"; return 1; }
}

# run_tests DIR NAME [MESON-TEST-ARGS...]: one meson run, counted from its own
# log (each run would overwrite meson-logs/testlog.json).
run_tests() {
        local dir=$1 name=$2
        shift 2
        rm -f "$dir/meson-logs/$name.json"
        echo "== $dir: $name"
        meson test -C "$dir" --logbase "$name" --print-errorlogs --num-processes 2 \
                --timeout-multiplier "${TIMEOUT_MULTIPLIER:-1}" "$@" || true
        count_meson "$dir/meson-logs/$name.json"
}

server_version() { # BINARY
        "$1" --version 2>/dev/null | sed -n 's/^nats-server: v\{0,1\}//p'
}

# The Go part, built before any test runs (a first build takes minutes).
matrix=() # "VERSION PATH", oldest first
go_log=$(mktemp)
go_out=$(bash tools/go-tools.sh 2>"$go_log")
go_rc=$?
if [ "$go_rc" = 77 ]; then
        cat "$go_log" # its one line: no Go, so no matrix and no Go oracles
elif [ "$go_rc" != 0 ] || ! jwtcheck=$(bash tools/go-tools.sh local tests/jwtcheck 2>>"$go_log"); then
        tail -30 "$go_log"
        echo "go-tools: building the Go test programs failed; the nats-server matrix is not run"
        failed=$((failed + 1))
else
        while read -r name version path; do
                case $name in
                nats-server) matrix+=("${version#v} $path") ;;
                nats) export NATS_CLI=$path ;;
                nsc) export NSC=$path ;;
                esac
        done <<<"$go_out"
        export JWTCHECK=$jwtcheck
        mapfile -t matrix < <(printf '%s\n' "${matrix[@]}" | sort -V)
fi
rm -f "$go_log"

default_server=${NATS_SERVER:-$(command -v nats-server || true)}
default_version=$( [ -n "$default_server" ] && server_version "$default_server")

if build build; then
        run_tests build testlog
        versions+=("${default_version:-none} (default${default_server:+, $default_server}: every suite, and under the sanitizers)")
        newest=${#matrix[@]}
        for entry in "${matrix[@]}"; do
                newest=$((newest - 1))
                version=${entry%% *}
                path=${entry#* }
                NATS_SERVER=$path run_tests build "testlog-nats-$version" --suite integration
                if [ "$newest" = 0 ]; then
                        # The unit under systemd; the system suite's other tests do not use a server.
                        NATS_SERVER=$path run_tests build "testlog-nats-$version-systemd" systemd
                        # One short convergence schedule, the cluster one (the default server
                        # runs them all with every suite; the selftest checks the driver).
                        NATS_SERVER=$path run_tests build "testlog-nats-$version-convergence" convergence-cluster
                        versions+=("$version (integration, systemd, convergence)")
                else
                        versions+=("$version (integration)")
                fi
        done
else
        failed=$((failed + 1))
fi

if build build-sanitize -Db_sanitize=address,undefined -Db_lundef=false; then
        TIMEOUT_MULTIPLIER=3 run_tests build-sanitize testlog
else
        failed=$((failed + 1))
fi

# Fuzzing smoke run: each target for a few seconds, from the examples.
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
                if ./build-fuzz/fuzz/fuzz-"$target" -max_total_time="${FUZZ_SECONDS:-10}" -rss_limit_mb=1024 \
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

echo "nats-server versions tested against:"
for v in "${versions[@]}"; do
        echo "  $v"
done
echo "$skipped skipped"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
