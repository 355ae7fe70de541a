#!/usr/bin/env bash
# The whole test suite: a normal build, a build under AddressSanitizer and
# UndefinedBehaviorSanitizer, and a short run of each fuzz target.
# Ends with one line "N passed, N failed"; exits non-zero when anything failed.
set -u
cd "$(dirname "$0")/.."
bash tools/install-deps.sh || exit 1

passed=0
failed=0
skipped=0

count_meson() {
        local log=$1/meson-logs/testlog.json
        [ -f "$log" ] || { failed=$((failed + 1)); return; }
        local p f s
        p=$(grep -cE '"result": "(OK|EXPECTEDFAIL)"' "$log")
        f=$(grep -cE '"result": "(FAIL|TIMEOUT|ERROR|UNEXPECTEDPASS)"' "$log")
        s=$(grep -cE '"result": "SKIP"' "$log")
        passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
}

suite() { # DIR MESON-OPTIONS...
        local dir=$1
        shift
        if [ ! -d "$dir" ]; then
                meson setup "$dir" "$@" >"$dir.setup.log" 2>&1 || { cat "$dir.setup.log"; failed=$((failed + 1)); return; }
        fi
        if ! ninja -C "$dir" >"$dir.build.log" 2>&1; then
                tail -50 "$dir.build.log"
                failed=$((failed + 1))
                return
        fi
        meson test -C "$dir" --print-errorlogs --num-processes 2 --timeout-multiplier "${TIMEOUT_MULTIPLIER:-1}" || true
        count_meson "$dir"
}

suite build
TIMEOUT_MULTIPLIER=3 suite build-sanitize -Db_sanitize=address,undefined -Db_lundef=false

# Fuzzing smoke run: each target for a few seconds, from the examples.
if CC=clang meson setup build-fuzz -Dfuzz=true -Dtests=false -Dman=disabled -Db_lundef=false >build-fuzz.setup.log 2>&1 &&
        ninja -C build-fuzz >build-fuzz.build.log 2>&1; then
        # Every parser of untrusted input: the files, and what the servers send.
        for target in accounts accounts-update settings jwt creds \
                reply-varz reply-statsz reply-info reply-jsz reply-accountz reply-pack reply-update; do
                corpus=$(mktemp -d)
                case $target in
                accounts*) cp config/accounts.yaml "$corpus"/ ;;
                settings) cp config/nats-accountd.conf "$corpus"/ ;;
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

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
