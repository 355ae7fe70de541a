#!/usr/bin/env python3
"""Measurements of `nats-accountd run` with a 5,000-account file (not a test).

    bench/daemon-latency.py [BUILD_DIR] [--accounts N] [--edits N] [--idle SECONDS]

BUILD_DIR (default: build) holds nats-accountd and tests/nats-probe; NATS_ACCOUNTD
and NATS_PROBE override them. nats-server 2.9.10 must be on PATH (or NATS_SERVER).
Everything runs in a temporary sandbox on 127.0.0.1 with a port nats-server picks.

1. Edit latency: the file is applied once with `apply`, then the daemon runs
   (log_level = info, plain stderr read live). Each edit changes APP's
   max_store by an atomic rename; latency is from just before the rename to the
   arrival of the daemon's "APP updated" line. Edits are spaced apart so each
   is a lone save (no burst delay).
2. Idle cost over --idle seconds: CPU (utime + stime of /proc/PID/stat, all
   threads), wake-ups (voluntary + nonvoluntary context switches: of the main
   thread as /proc/PID/status shows them, and summed over /proc/PID/task/*),
   and memory (VmRSS, VmHWM).
"""

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness  # noqa: E402
from test_daemon import Daemon  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def accounts_file(n, app_store):
    # Small limits: n x 1 KiB stays far below the server's JetStream totals.
    lines = ["accounts:", "  APP:", "    jetstream:", "      max_memory: 1KiB", "      max_store: %d" % app_store]
    for i in range(n - 1):
        lines.append("  BENCH%05d:\n    jetstream:\n      max_memory: 1KiB\n      max_store: 1KiB" % i)
    return "\n".join(lines) + "\n"


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)


def status_fields(path):
    out = {}
    with open(path) as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def switches(pid):
    """(main thread, all threads): voluntary + nonvoluntary context switches."""
    def one(path):
        s = status_fields(path)
        return int(s["voluntary_ctxt_switches"]) + int(s["nonvoluntary_ctxt_switches"])

    main = one("/proc/%d/status" % pid)
    total = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            total += one("/proc/%d/task/%s/status" % (pid, tid))
        except OSError:
            pass  # a thread that ended meanwhile
    return main, total, len(os.listdir("/proc/%d/task" % pid))


def percentile(sorted_values, p):
    """Nearest-rank percentile."""
    k = max(0, min(len(sorted_values) - 1, -(-len(sorted_values) * p // 100) - 1))
    return sorted_values[int(k)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build", nargs="?", default=os.path.join(ROOT, "build"))
    ap.add_argument("--accounts", type=int, default=5000)
    ap.add_argument("--edits", type=int, default=40)
    ap.add_argument("--idle", type=float, default=60.0)
    ap.add_argument("--spacing", type=float, default=0.3, help="seconds between one edit's update and the next edit")
    a = ap.parse_args()
    if a.edits < 30:
        sys.exit("at least 30 edits")
    os.environ.setdefault("NATS_ACCOUNTD", os.path.join(a.build, "nats-accountd"))
    os.environ.setdefault("NATS_PROBE", os.path.join(a.build, "tests", "nats-probe"))

    sb = harness.Sandbox("latency")
    daemon = None
    try:
        sb.start_server()
        sb.set_setting("log_level", "info")
        n = a.accounts
        store = 1024
        sb.write_accounts(accounts_file(n, store))
        r = sb.accountd("apply", timeout=600)
        if r.returncode != 0:
            sys.exit("apply failed (exit %d): %s" % (r.returncode, r.stderr[-2000:]))

        daemon = Daemon(sb.t["accountd"], sb.conf)
        tmp = os.path.join(sb.dir, ".accounts.yaml.bench-tmp")

        def edit(timeout):
            nonlocal store
            store += 1024
            with open(tmp, "w") as f:
                f.write(accounts_file(n, store))
            since = daemon.mark()
            t0 = time.monotonic()
            os.rename(tmp, sb.accounts_file)
            _, t1, _ = daemon.wait_line(r"^APP updated: max_store ", since, timeout)
            return t1 - t0

        # The first edit also waits for the start-up sweep: not counted.
        edit(120)
        time.sleep(a.spacing)
        lat = []
        for _ in range(a.edits):
            lat.append(edit(10))
            time.sleep(a.spacing)
        lat_ms = sorted(x * 1000 for x in lat)
        errors = [m.string for _, _, m in daemon.find(r"^(error|warning): ")]
        if errors:
            print("daemon warnings/errors:\n  " + "\n  ".join(errors[:10]))

        pid = daemon.pid
        time.sleep(1.0)
        cpu0, (sw_main0, sw_all0, _) = cpu_ticks(pid), switches(pid)
        t0 = time.monotonic()
        time.sleep(a.idle)
        cpu1, (sw_main1, sw_all1, threads) = cpu_ticks(pid), switches(pid)
        idle_s = time.monotonic() - t0
        mem = status_fields("/proc/%d/status" % pid)
        lines_idle = len(daemon.find(r".", 0))

        print("nats-accountd run, %d accounts, log_level info, %s" % (
            n, harness.run([sb.t["server"], "--version"]).stdout.strip()))
        print("edit -> \"APP updated\" line, %d edits of APP max_store (atomic rename, %.1fs apart):" % (
            len(lat_ms), a.spacing))
        print("  p50 %.1f ms   p99 %.1f ms   max %.1f ms   min %.1f ms" % (
            percentile(lat_ms, 50), percentile(lat_ms, 99), lat_ms[-1], lat_ms[0]))
        print("idle %.1f s:" % idle_s)
        cpu_s = (cpu1 - cpu0) / CLK_TCK
        print("  CPU (utime+stime, all threads)  %.2f s = %.3f%% of one core" % (cpu_s, 100 * cpu_s / idle_s))
        print("  context switches main thread    %d (%.2f/s)" % (sw_main1 - sw_main0, (sw_main1 - sw_main0) / idle_s))
        print("  context switches all %2d threads %d (%.2f/s)" % (threads, sw_all1 - sw_all0,
                                                               (sw_all1 - sw_all0) / idle_s))
        print("  VmRSS %s   VmHWM %s" % (mem["VmRSS"], mem["VmHWM"]))
        print("  daemon log lines in total: %d" % lines_idle)
        rc = daemon.stop()
        if rc != 0:
            print("daemon exited with %d on SIGTERM" % rc)
    finally:
        if daemon:
            daemon.kill()
        sb.cleanup()


if __name__ == "__main__":
    main()
