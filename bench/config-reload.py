#!/usr/bin/env python3
"""Config mode: how long an edit takes to be applied, beside the server's own reload (not a test).

    bench/config-reload.py [BUILD_DIR] [--edits N]

BUILD_DIR (default: build) holds nats-accountd and tests/nats-probe; NATS_ACCOUNTD
and NATS_PROBE override them. NATS_SERVER picks the nats-server (default: the
one on PATH): 2.9.10 is reloaded by SIGHUP, 2.10 and newer by the RELOAD request.
Everything runs in the sandbox of `nats-accountd init --mode config --port -1`.

Printed, in milliseconds (median, min, max):
1. The server's own reload: from SIGHUP to the config_load_time it then reports
   (every version), and the round trip of $SYS.REQ.SERVER.<id>.RELOAD (2.10+).
2. nats-accountd `run`, one account's JetStream limit changed by an atomic
   rename of the accounts file: the daemon's pass for it (its own "pass N
   finished in" figure: read the account, VARZ, INFO and JSZ, write and fsync
   the fragment, reload every server, wait for config_load_time, INFO and JSZ
   again), and from the rename to the account's new reserved_storage seen
   through the system account (that adds inotify, the probe's own start and
   its polling).
"""

import argparse
import calendar
import os
import re
import signal
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import confmode  # noqa: E402
import harness  # noqa: E402

ACCOUNTS = ("accounts:\n  APP:\n    jetstream: {{ max_memory: 64MiB, max_store: {store}MiB }}\n"
            "  ORDERS:\n    jetstream: disabled\n  LEGACY:\n    jetstream: disabled\n")


def figures(v):
    return "median %.1f, min %.1f, max %.1f (n=%d)" % (statistics.median(v), min(v), max(v), len(v))


def rfc3339_ns(s):
    m = re.match(r"(\d+)-(\d+)-(\d+)T(\d+):(\d+):(\d+)(?:\.(\d+))?Z$", s)
    secs = calendar.timegm(tuple(int(x) for x in m.groups()[:6]))
    return secs * 10**9 + int((m.group(7) or "0").ljust(9, "0")[:9])


def reserved(sb):
    """APP's reserved limits, or None; a probe that connects while the server
    reloads its users may be dropped: that is a None too."""
    try:
        return sb.reserved("APP")
    except harness.HarnessError:
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build", nargs="?", default=os.path.join(ROOT, "build"))
    ap.add_argument("--edits", type=int, default=20)
    args = ap.parse_args()
    os.environ.setdefault("NATS_ACCOUNTD", os.path.join(args.build, "nats-accountd"))
    os.environ.setdefault("NATS_PROBE", os.path.join(args.build, "tests", "nats-probe"))
    sb = confmode.ConfigSandbox("bench")
    try:
        srv = sb.start_server()
        print("nats-server %s" % ".".join(map(str, sb.version)))
        hup = []
        for _ in range(args.edits):
            t0 = time.time_ns()
            os.kill(srv.proc.pid, signal.SIGHUP)
            time.sleep(0.2)
            varz = sb.request_json(sb.sys_creds, "$SYS.REQ.SERVER.PING.VARZ")
            hup.append((rfc3339_ns(varz["data"]["config_load_time"]) - t0) / 1e6)
        print("server: SIGHUP to config_load_time      %s" % figures(hup))
        if sb.has_reload_request:
            sid = sb.request_json(sb.sys_creds, "$SYS.REQ.SERVER.PING.VARZ")["server"]["id"]
            rt = []
            for _ in range(args.edits):
                r = sb.probe("gather", sb.sys_creds, sb.url, "$SYS.REQ.SERVER.%s.RELOAD" % sid, "", 5000, 1)
                rt.append(int(re.search(r"usec (\d+)", r.stderr).group(1)) / 1000)
            print("server: RELOAD request round trip       %s" % figures(rt))

        sb.set_setting("log_level", "debug")
        log_path = os.path.join(sb.root, "daemon.log")
        log = open(log_path, "wb")
        d = subprocess.Popen([sb.t["accountd"], "-c", sb.conf, "run"], stdout=log, stderr=subprocess.STDOUT)
        try:
            harness.poll(lambda: reserved(sb) is not None, 20, "the first pass")
            seen = []
            for i in range(args.edits):
                store = 300 + i
                text = ACCOUNTS.format(store=store)
                tmp = sb.path(".accounts.yaml.tmp")
                with open(tmp, "w") as f:
                    f.write(text)
                t0 = time.monotonic()
                os.rename(tmp, sb.accounts_file)
                harness.poll(lambda: reserved(sb) == (64 << 20, store << 20), 20, "edit %d applied" % i,
                             interval=0.001)
                seen.append((time.monotonic() - t0) * 1000)
                time.sleep(0.3)
        finally:
            d.terminate()
            d.wait(10)
            log.close()
        with open(log_path) as f:
            passes = [float(x) for x in
                      re.findall(r"pass \d+ finished in ([0-9.]+) ms: 1 accounts checked, 1 changed", f.read())]
        route = "request" if sb.has_reload_request else "signal"
        print("nats-accountd (%s): one-account pass  %s" % (route, figures(passes)))
        print("nats-accountd (%s): rename to seen    %s" % (route, figures(seen)))
    finally:
        sb.cleanup()


if __name__ == "__main__":
    main()
