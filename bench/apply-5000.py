#!/usr/bin/env python3
"""Benchmark: apply 5,000 accounts to one nats-server (operator mode), then update all of them.

    bench/apply-5000.py [BUILD_DIR] [--accounts N]

BUILD_DIR (default: build) holds nats-accountd and tests/nats-probe; NATS_ACCOUNTD
and NATS_PROBE override them. nats-server 2.9.10 must be on PATH (or NATS_SERVER).
Everything runs in a temporary sandbox on 127.0.0.1 with a port nats-server picks.

Prints the wall time of: apply (create), plan (in sync), apply (update every
account's max_store), plan (in sync), and $SYS.REQ.CLAIMS.PACK measured by
nats-probe (the CLI does not print the pack time its observe step records).
"""

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness  # noqa: E402


def accounts_file(n, max_store):
    # The standalone server checks the sum of all accounts' limits against its own
    # (max_mem 1G, max_file 10G in init's config): 5,000 x 1.5 MB stays below 10 GB.
    lines = ["accounts:"]
    for i in range(n):
        lines.append(
            "  BENCH%05d:\n    jetstream:\n      max_memory: 100000\n      max_store: %d\n      max_streams: 10\n"
            % (i, max_store)
        )
    return "\n".join(lines) + "\n"


def timed(sb, *args):
    t0 = time.monotonic()
    r = sb.accountd(*args, timeout=600)
    dt = time.monotonic() - t0
    if r.returncode != 0:
        sys.exit("nats-accountd %s failed (exit %d):\n%s\n%s" % (" ".join(args), r.returncode, r.stdout[-2000:], r.stderr[-2000:]))
    return dt, r


def pack(sb, n):
    r = sb.probe("gather", sb.sys_creds, sb.url, "$SYS.REQ.CLAIMS.PACK", "", 60000, "until-empty", timeout=120)
    if r.returncode != 0:
        sys.exit("CLAIMS.PACK did not end: %s" % r.stderr)
    # nats-probe's last stderr line: "replies N usec T"
    words = r.stderr.split()
    got, usec = int(words[-3]), int(words[-1])
    return got, usec / 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build", nargs="?", default=os.path.join(ROOT, "build"))
    ap.add_argument("--accounts", type=int, default=5000)
    a = ap.parse_args()
    os.environ.setdefault("NATS_ACCOUNTD", os.path.join(a.build, "nats-accountd"))
    os.environ.setdefault("NATS_PROBE", os.path.join(a.build, "tests", "nats-probe"))

    sb = harness.Sandbox("bench")
    try:
        sb.start_server()
        n = a.accounts
        sb.write_accounts(accounts_file(n, 1000000))
        rows = []
        dt, r = timed(sb, "apply")
        created = sum(1 for line in r.stdout.splitlines() if line.startswith("+ "))
        if created != n:
            sys.exit("apply created %d of %d accounts" % (created, n))
        rows.append(("apply, create %d accounts" % n, dt))
        dt, _ = timed(sb, "plan", "--detailed-exitcode")
        rows.append(("plan, %d in sync" % n, dt))
        got, pack_s = pack(sb, n)
        rows.append(("CLAIMS.PACK, %d JWTs (nats-probe)" % got, pack_s))

        sb.write_accounts(accounts_file(n, 1500000))
        dt, _ = timed(sb, "plan", "--json")
        rows.append(("plan, %d updates pending" % n, dt))
        dt, r = timed(sb, "apply")
        updated = sum(1 for line in r.stdout.splitlines() if line.startswith("~ "))
        if updated != n:
            sys.exit("apply updated %d of %d accounts" % (updated, n))
        rows.append(("apply, update %d accounts" % n, dt))
        dt, _ = timed(sb, "plan", "--detailed-exitcode")
        rows.append(("plan, %d in sync" % n, dt))

        width = max(len(name) for name, _ in rows)
        for name, dt in rows:
            print("%-*s  %7.3f s" % (width, name, dt))
    finally:
        sb.cleanup()


if __name__ == "__main__":
    main()
