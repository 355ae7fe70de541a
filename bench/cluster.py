#!/usr/bin/env python3
"""nats-accountd on a 3-node cluster (loopback) against the cluster's own ceiling, in one run.

    python3 bench/cluster.py [BUILD_DIR] [--accounts N] [--edits E] [--size S]

BUILD_DIR as for bench/run.py (nats-accountd, tests/nats-probe and
bench/accountd-bench; nothing is built here); nats-server from PATH or
NATS_SERVER. Each cluster is harness.Cluster: S servers (default 3) on
127.0.0.1 with ports they pick, routes between them, JetStream clustered,
stopped by PID at the end. N defaults to 10,000.

Measured:
 1. the cluster's ceiling, on a fresh cluster of its own: one CLAIMS.PACK + N
    pre-signed account JWTs pushed by accountd-bench, a push answered only
    once every server's reply came (`ceiling --replies S`): creating N
    accounts (at most 512 unanswered, as apply does), then updating them
    twice (at most 512 unanswered; back to back), the better update counting;
 2. `apply` creating N accounts on another fresh cluster, then updating all N,
    each as a ratio to the ceiling;
 3. edit-to-applied of one account under `run` on that cluster: from the
    atomic rename of the N-account file to the daemon's "<NAME> updated" line,
    which it logs only once every server confirmed the push (each server's
    CLAIMS.UPDATE reply, attributed by server id) and every server that has
    the account loaded reports it applied.
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import harness  # noqa: E402
import run as R  # noqa: E402


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def measure_ceiling(build, n, size, tmp):
    sb = harness.Cluster(size)
    try:
        sb.start_cluster()
        url = sb.url
        base = os.path.join(tmp, "jwts")
        R.bench_tool(build, "sign", sb.signer, str(n), "BENCH", str(R.MAX_MEMORY),
                     "%d,%d,%d" % (R.STORES[0], R.STORES[1], R.STORES[0]), base)
        out = {}
        for what, part, opts in (("create", 0, ["--window", str(R.WINDOW)]),
                                 ("update_windowed", 1, ["--window", str(R.WINDOW)]),
                                 ("update_back_to_back", 2, [])):
            os.sync()
            doc = R.bench_tool(build, "ceiling", sb.sys_creds, url, "%s.%d" % (base, part),
                               "--replies", str(size), *opts)
            if doc["ok"] != n * size:
                R.die("cluster ceiling %s: %d of %d replies said \"jwt updated\"" % (what, doc["ok"], n * size))
            out[what] = doc
        return out
    finally:
        sb.cleanup()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("build", nargs="?", default=os.path.join(os.getcwd(), "build"))
    ap.add_argument("--accounts", type=int, default=10000, help="N (default 10,000)")
    ap.add_argument("--edits", type=int, default=50, help="edits timed under run (default 50)")
    ap.add_argument("--size", type=int, default=3, help="servers in the cluster (default 3)")
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    os.environ["NATS_ACCOUNTD"] = os.path.join(build, "nats-accountd")
    os.environ["NATS_PROBE"] = os.path.join(build, "tests", "nats-probe")
    for p in (os.environ["NATS_ACCOUNTD"], os.environ["NATS_PROBE"], os.path.join(build, "bench", "accountd-bench")):
        if not os.access(p, os.X_OK):
            R.die("%s is missing: build %s first" % (p, build))
    n, size = a.accounts, a.size
    print("machine: " + R.machine(), flush=True)
    print("load average at the start: " + loadavg(), flush=True)
    tmp = tempfile.mkdtemp(prefix="nats-accountd-bench.")
    try:
        print("1/3 the cluster's ceiling (%d servers, pre-signing %d JWTs x 3) ..." % (size, n), flush=True)
        ceil = measure_ceiling(build, n, size, tmp)
        print("2-3/3 apply, then edits under run ...", flush=True)
        sb = harness.Cluster(size)
        try:
            sb.start_cluster()
            sb.write_accounts(R.accounts_yaml(n, R.STORES[0]))
            os.sync()
            t_create, r = R.timed_accountd(sb, "apply")
            if R.count_lines(r.stdout, "+ ") != n:
                R.die("apply created %d of %d accounts:\n%s" % (R.count_lines(r.stdout, "+ "), n, r.stderr[-2000:]))
            sb.write_accounts(R.accounts_yaml(n, R.STORES[1]))
            os.sync()
            t_update, r = R.timed_accountd(sb, "apply")
            if R.count_lines(r.stdout, "~ ") != n:
                R.die("apply updated %d of %d accounts:\n%s" % (R.count_lines(r.stdout, "~ "), n, r.stderr[-2000:]))
            daemon = R.Daemon(sb)
            try:
                daemon.wait_ready(300)
                time.sleep(0.2)
                lat = R.measure_latency(sb, daemon, n, a.edits)
            finally:
                daemon.stop()
        finally:
            sb.cleanup()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    secs = R.seconds
    c_create = secs(ceil["create"])
    c_update = min(secs(ceil["update_windowed"]), secs(ceil["update_back_to_back"]))
    ms = [x * 1000 for x in lat]
    p50, p99 = R.percentile(ms, 50), R.percentile(ms, 99)
    rows = [
        ("cluster ceiling: PACK + %d creates, every server's reply, <= %d in flight" % (n, R.WINDOW),
         "%.3f s (PACK %.3f s)" % (c_create, ceil["create"]["pack_usec"] / 1e6), ""),
        ("cluster ceiling: PACK + %d updates, <= %d in flight" % (n, R.WINDOW),
         "%.3f s (PACK %.3f s)" % (secs(ceil["update_windowed"]), ceil["update_windowed"]["pack_usec"] / 1e6), ""),
        ("cluster ceiling: PACK + %d updates, back to back" % n,
         "%.3f s (PACK %.3f s)" % (secs(ceil["update_back_to_back"]), ceil["update_back_to_back"]["pack_usec"] / 1e6),
         ""),
        ("apply, create %d" % n, "%.3f s = %.2f x ceiling (%.3f s)" % (t_create, t_create / c_create, c_create),
         "(no target)"),
        ("apply, update %d" % n, "%.3f s = %.2f x ceiling (%.3f s, the better above)"
         % (t_update, t_update / c_update, c_update), "<= 1.3 x: " + R.verdict(t_update / c_update <= 1.3)),
        ("run: edit-to-applied, all %d servers confirmed, %d edits" % (size, len(ms)),
         "p50 %.1f ms, p99 %.1f ms, min %.1f, median %.1f, max %.1f" % (p50, p99, min(ms), statistics.median(ms), max(ms)),
         "p50 <= 15: " + R.verdict(p50 <= 15)),
    ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    print()
    print("| %-*s | %-*s | %s" % (w0, "measure (%d-node cluster, %d accounts)" % (size, n), w1, "result", "target"))
    print("|-%s-|-%s-|-------" % ("-" * w0, "-" * w1))
    for r in rows:
        print("| %-*s | %-*s | %s" % (w0, r[0], w1, r[1], r[2]))
    print("load average at the end: " + loadavg())


if __name__ == "__main__":
    main()
