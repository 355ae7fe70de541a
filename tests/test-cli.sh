#!/usr/bin/env bash
# The command line: check on the examples, exit codes and locations of bad input.
set -u
BIN=${1:?usage: test-cli.sh PATH-TO-nats-accountd}
SRC=${SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0
n=0

ok() { n=$((n + 1)); echo "ok $n - $1"; }
bad() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $1"; }

# expect CODE PATTERN DESCRIPTION -- ARGS...: exit code and a line of stdout+stderr matching PATTERN.
expect() {
        local code=$1 pattern=$2 what=$3
        shift 4
        local out rc
        # Bounded: a command that should refuse to start must not hang instead.
        out=$(timeout 20 "$BIN" "$@" 2>&1)
        rc=$?
        if [ "$rc" != "$code" ]; then
                bad "$what: exit $rc, want $code; output: $out"
        elif [ -n "$pattern" ] && ! grep -qE -- "$pattern" <<<"$out"; then
                bad "$what: output lacks /$pattern/: $out"
        else
                ok "$what"
        fi
}

# Real secrets, made once by init: check validates their contents too.
"$BIN" init "$T/sandbox" --port 14999 >/dev/null || { echo "not ok - init failed"; exit 1; }

setup() {
        rm -rf "$T/etc"
        mkdir -p "$T/etc"
        cp "$SRC/config/nats-accountd.conf" "$SRC/config/accounts.yaml" "$T/etc/"
        cp -p "$T/sandbox/operator-signer.nk" "$T/sandbox/sys.creds" "$T/etc/"
}

C="$T/etc/nats-accountd.conf"

expect 0 'Usage:' "--help" -- --help
expect 0 '^nats-accountd [0-9]' "--version" -- --version
expect 64 'missing command' "no command" --
expect 64 "unknown command 'frobnicate'" "unknown command" -- frobnicate
expect 64 "unknown option '--bogus'" "unknown option" -- --bogus check
expect 64 "needs a value" "-c without a value" -- -c

setup
expect 0 'accounts.yaml: [0-9]+ accounts? OK' "check on the examples" -- -c "$C" check
expect 64 "unexpected argument" "check with an extra argument" -- -c "$C" check extra
expect 66 "nope.conf" "missing settings file" -- -c "$T/nope.conf" check

setup
chmod 644 "$T/etc/sys.creds"
expect 77 "sys.creds is readable by group or others .*chmod 600" "creds readable by others" -- -c "$C" check
setup
chmod 640 "$T/etc/operator-signer.nk"
expect 77 "operator-signer.nk is readable by group or others" "signing key readable by group" -- -c "$C" check
setup
rm "$T/etc/sys.creds"
expect 66 "sys.creds" "missing credentials" -- -c "$C" check

# Every command checks the secrets the same way, `run` included. The server
# is a closed loopback port: nothing may get as far as connecting.
for cmd in run plan apply user-creds; do
        setup
        sed -i 's|^servers = .*|servers = nats://127.0.0.1:1|' "$C"
        chmod 644 "$T/etc/sys.creds"
        args=("$cmd")
        [ "$cmd" = user-creds ] && args=(user-creds APP tester)
        expect 77 "sys.creds is readable by group or others .*chmod 600" "$cmd: creds readable by others" -- -c "$C" "${args[@]}"
done
setup
sed -i 's|^servers = .*|servers = nats://127.0.0.1:1|' "$C"
printf 'not a key\n' >"$T/etc/client-key.pem"
chmod 644 "$T/etc/client-key.pem"
sed -i 's|^;tls_cert = .*|tls_cert = client.pem|; s|^;tls_key = .*|tls_key = client-key.pem|' "$C"
expect 77 "client-key.pem is readable by group or others" "run: tls_key readable by others" -- -c "$C" run
setup
sed -i 's|^servers = .*|servers = nats://127.0.0.1:1|' "$C"
printf 'not creds\n' >"$T/etc/sys.creds"
expect 78 "credentials .*sys.creds: not a user .creds file" "run: credentials that are not a .creds file" -- -c "$C" run

setup
cp -p "$T/sandbox/operator.nk" "$T/etc/operator-signer.nk"
expect 0 'OK' "the operator identity key signs too" -- -c "$C" check
printf '# a user seed\n' >"$T/etc/operator-signer.nk"
grep -A1 'BEGIN USER NKEY SEED' "$T/sandbox/sys.creds" | tail -1 >>"$T/etc/operator-signer.nk"
expect 78 "signing_key .*operator-signer.nk: not an operator seed" "a user seed as signing key" -- -c "$C" check
printf 'no seed here\n' >"$T/etc/operator-signer.nk"
expect 78 "signing_key .*no nkey seed" "a signing key file without a seed" -- -c "$C" check
setup
printf 'not creds\n' >"$T/etc/sys.creds"
expect 78 "credentials .*sys.creds: not a user .creds file" "credentials that are not a .creds file" -- -c "$C" check

setup
printf '[nats]\nservers = nats://127.0.0.1:4222\nbogus = 1\n' >"$T/etc/bad.conf"
expect 78 "bad.conf:3: .*bogus" "unknown settings key" -- -c "$T/etc/bad.conf" check
printf '[nats]\nrequest_timeout = soon\n' >"$T/etc/bad.conf"
expect 78 "bad.conf:2: .*request_timeout" "bad duration" -- -c "$T/etc/bad.conf" check
printf '[nope]\n' >"$T/etc/bad.conf"
expect 78 "bad.conf:1: .*nope" "unknown section" -- -c "$T/etc/bad.conf" check

setup
rm "$T/etc/accounts.yaml"
expect 66 "accounts.yaml" "missing accounts file" -- -c "$C" check
setup
printf 'accounts:\n  APP:\n    jetstream:\n      max_store: 5XB\n' >"$T/etc/accounts.yaml"
expect 65 "accounts.yaml:4:18: .*max_store" "bad size with its location" -- -c "$C" check
printf 'accounts:\n  A.B: {}\n  APP:\n    jetstream: {max_streams: -5}\n' >"$T/etc/accounts.yaml"
out=$("$BIN" -c "$C" check 2>&1)
rc=$?
if [ $rc = 65 ] && grep -q 'accounts.yaml:2:3:' <<<"$out" && grep -q 'accounts.yaml:4:30:' <<<"$out"; then
        ok "every error of the file reported"
else
        bad "every error of the file reported: exit $rc: $out"
fi
printf 'accounts:\n  APP: {}\n  APP: {}\n' >"$T/etc/accounts.yaml"
expect 65 "accounts.yaml:3:3: .*duplicate account APP" "duplicate account" -- -c "$C" check
printf 'accounts:\n  APP:\n    key: ABCDEF\n' >"$T/etc/accounts.yaml"
expect 65 "accounts.yaml:3:10: .*key" "bad pinned key" -- -c "$C" check
printf 'accounts: [\n' >"$T/etc/accounts.yaml"
expect 65 "accounts.yaml:[0-9]+:[0-9]+: .*YAML" "YAML syntax error" -- -c "$C" check
printf 'accounts:\n  APP:\n    limits:\n      max_connections: 4294967296\n' >"$T/etc/accounts.yaml"
expect 65 "accounts.yaml:4:24: APP.limits.max_connections: .*32 bits" "a limit nats-server would cut to 32 bits" -- -c "$C" check
printf 'accounts:\n  APP:\n    limits: { max_connections: 5, max_data: 1GiB }\n' >"$T/etc/accounts.yaml"
expect 0 "1 account OK" "operator-only account limits in operator mode" -- -c "$C" check

# Config mode.
expect 64 "init: --mode takes operator or config" "init with an unknown mode" -- init "$T/x" --mode both
"$BIN" init "$T/cfg" --mode config --port 14998 >/dev/null || { echo "not ok - init --mode config failed"; exit 1; }
CC="$T/cfg/nats-accountd.conf"
expect 0 'accounts.yaml: 3 accounts OK' "check of the config-mode sandbox" -- -c "$CC" check
expect 73 "already exists" "init --mode config over a sandbox" -- init "$T/cfg" --mode config
expect 64 "user-creds: operator mode only" "user-creds in config mode" -- -c "$CC" user-creds APP me
cp "$CC" "$T/cfg/saved.conf"
printf 'accounts:\n  APP:\n    jetstream:\n      tiers:\n        R1: {max_store: 1GiB}\n' >"$T/cfg/t.yaml"
sed -i 's|^file = accounts.yaml|file = t.yaml|' "$CC"
expect 65 "t.yaml:4:7: .*tiers need operator mode" "tiers in config mode" -- -c "$CC" check
printf 'accounts:\n  APP:\n    limits: { max_connections: 5, max_data: 1GiB }\n' >"$T/cfg/t.yaml"
expect 65 "t.yaml:3:35: APP.limits.max_data: .*needs operator mode" "operator-only account limits in config mode" -- -c "$CC" check
cp "$T/cfg/saved.conf" "$CC"
sed -i 's|^\[accounts\]|[accounts]\ncreate_missing = yes|' "$CC"
expect 0 "nats-accountd.conf:[0-9]+: create_missing is ignored in config mode" "create_missing warned about" -- -c "$CC" check
cp "$T/cfg/saved.conf" "$CC"
sed -i 's|^fragments_dir = .*|fragments_dir = nope.d|' "$CC"
expect 66 "fragments_dir .*nope.d: No such file or directory; create it" "missing fragments folder" -- -c "$CC" check
sed -i 's|^fragments_dir = .*|fragments_dir = accounts.yaml|' "$CC"
expect 66 "fragments_dir .*accounts.yaml: not a folder" "fragments folder that is a file" -- -c "$CC" check
cp "$T/cfg/saved.conf" "$CC"
sed -i 's|^server_config = .*|server_config = nope.conf|' "$CC"
expect 66 "server_config .*nope.conf: No such file" "missing server config" -- -c "$CC" check
cp "$T/cfg/saved.conf" "$CC"
sed -i 's|^reload = .*|reload = signal|' "$CC"
expect 66 "pid file .*nats-server.pid: No such file or directory \(reload = signal reads it" "signal route without a pid file" -- -c "$CC" check
sed -i 's|^pid_file: .*||' "$T/cfg/nats-server.conf"
expect 78 "reload = signal needs a pid file: .*nats-server.conf sets no pid_file" "signal route, no pid_file anywhere" -- -c "$CC" check
cp "$T/cfg/saved.conf" "$CC"
sed -i 's|include "accounts.d/ORDERS.conf".*||' "$T/cfg/nats-server.conf"
expect 0 'note: .*nats-server.conf:[0-9]+: the block of account ORDERS does not include its fragment; add the line: include "accounts.d/ORDERS.conf"' "a missing include is a note" -- -c "$CC" check
chmod 640 "$T/cfg/accountd.nk"
expect 77 "accountd.nk is readable by group or others" "nkey seed readable by group" -- -c "$CC" check
chmod 600 "$T/cfg/accountd.nk"
sed -i 's|^credentials = .*|user = accountd\npassword_file = pw|' "$CC"
printf 'secret\n' >"$T/cfg/pw"
chmod 644 "$T/cfg/pw"
expect 77 "pw is readable by group or others" "password file readable by others" -- -c "$CC" check
: >"$T/cfg/pw"
chmod 600 "$T/cfg/pw"
expect 78 "password file .*pw is empty" "empty password file" -- -c "$CC" check
printf 'secret\n' >"$T/cfg/pw"
expect 0 "3 accounts OK" "password user" -- -c "$CC" check
printf 'not a seed\n' >"$T/cfg/accountd.nk"
cp "$T/cfg/saved.conf" "$CC"
expect 78 "credentials .*accountd.nk: neither a user .creds file nor an nkey user seed file" "credentials that are neither" -- -c "$CC" check

echo "1..$n"
[ "$fails" = 0 ]
