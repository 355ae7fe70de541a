#!/usr/bin/env bash
# The main job on one machine: install what is missing, build, make a sandbox
# with `nats-accountd init`, start its nats-server, show `plan` and `apply`,
# then run the daemon in the foreground. Edit sandbox/accounts.yaml in another
# terminal and watch the limits follow. Ctrl-C stops both.
set -eu
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
[ -d build ] || meson setup build >/dev/null
ninja -C build >/dev/null
BIN=$PWD/build/nats-accountd
SANDBOX=${SANDBOX:-$PWD/sandbox}
PORT=${PORT:-14222}

[ -f "$SANDBOX/nats-accountd.conf" ] || "$BIN" init "$SANDBOX" --port "$PORT"
nats-server -c "$SANDBOX/nats-server.conf" >"$SANDBOX/nats-server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null' EXIT
for _ in $(seq 50); do
        grep -q "Server is ready" "$SANDBOX/nats-server.log" && break
        sleep 0.1
done

echo "== nats-accountd plan"
"$BIN" -c "$SANDBOX/nats-accountd.conf" plan || true
echo "== nats-accountd apply"
"$BIN" -c "$SANDBOX/nats-accountd.conf" apply
echo "== nats-accountd run (edit $SANDBOX/accounts.yaml; Ctrl-C to stop)"
"$BIN" -c "$SANDBOX/nats-accountd.conf" run
