"""`nats-accountd run` against a real nats-server (NATS_SERVER; operator mode, standalone).

The daemon runs in the foreground with log_level = debug and plain stderr (no
JOURNAL_STREAM, no NOTIFY_SOCKET); a reader thread keeps every line with the
time it arrived, and the tests read the daemon's behaviour from those lines and
from the server. Every wait has a deadline.

Run by meson (suite 'integration') with NATS_ACCOUNTD and NATS_PROBE set:
    python3 test_daemon.py -v
nats-server must be on PATH (or NATS_SERVER); without any, the program skips (exit 77).
"""

import json
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import jwt_claims, poll  # noqa: E402

EXAMPLE_ACCOUNTS = ("APP", "ORDERS", "LEGACY")

# The accounts of the long-pass tests (the pass thread against the event loop):
# enough for a pass of several seconds. DAEMON_TEST_LONG_PASS=0 leaves those
# tests out: tools/test-all.sh does so on the server matrix, where they would
# test the daemon's threads again rather than the server, and uses fewer under
# the sanitizers, where each push costs more.
LONG_PASS = int(os.environ.get("DAEMON_TEST_LONG_PASS", "20000"))
needs_long_pass = unittest.skipUnless(LONG_PASS > 0, "DAEMON_TEST_LONG_PASS=0: long-pass tests left out")

PASS_STARTED = re.compile(r"^debug: pass (\d+) started")
PASS_FINISHED = re.compile(
    r"^debug: pass (?P<n>\d+) finished in (?P<ms>[0-9.]+) ms: (?P<checked>\d+) accounts checked, "
    r"(?P<changed>\d+) changed, (?P<failed>\d+) failed, (?P<requests>\d+) requests$"
)

# Variables that would make the daemon log to the journal or talk to systemd.
SYSTEMD_ENV = ("JOURNAL_STREAM", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID")


class Daemon:
    """`nats-accountd -c CONF run` with its stderr lines kept as (monotonic time, text);
    with notify_path, also what it sends to that NOTIFY_SOCKET, as (time, message)."""

    def __init__(self, binary, conf, notify_path=None):
        env = {k: v for k, v in os.environ.items() if k not in SYSTEMD_ENV}
        self.notified = []
        if notify_path:
            self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.notify.bind(notify_path)
            env["NOTIFY_SOCKET"] = notify_path
            threading.Thread(target=self._notifications, daemon=True).start()
        self.proc = subprocess.Popen(
            [binary, "-c", conf, "run"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        self.pid = self.proc.pid
        self.lines = []
        self.eof = False
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _notifications(self):
        while True:
            try:
                data = self.notify.recv(4096)
            except OSError:
                return
            t = time.monotonic()
            with self.cond:
                for line in data.decode(errors="replace").splitlines():
                    self.notified.append((t, line))
                self.cond.notify_all()

    def _read(self):
        for raw in self.proc.stderr:
            t = time.monotonic()
            with self.cond:
                self.lines.append((t, raw.decode(errors="replace").rstrip("\n")))
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    # reading the log -------------------------------------------------------

    def mark(self):
        """An index into the log: what comes after it happened after this call."""
        with self.cond:
            return len(self.lines)

    def text(self, since=0):
        with self.cond:
            return "\n".join(line for _, line in self.lines[since:])

    def find(self, pattern, since=0):
        """[(index, time, match)] of the lines from `since` on that match."""
        rx = re.compile(pattern)
        with self.cond:
            lines = self.lines[since:]
        out = []
        for i, (t, line) in enumerate(lines, start=since):
            m = rx.search(line)
            if m:
                out.append((i, t, m))
        return out

    def wait_line(self, pattern, since=0, timeout=5.0):
        """The first line from `since` on matching pattern: (index, time, match)."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        i = since
        with self.cond:
            while True:
                while i < len(self.lines):
                    m = rx.search(self.lines[i][1])
                    if m:
                        return i, self.lines[i][0], m
                    i += 1
                left = deadline - time.monotonic()
                if self.eof or left <= 0:
                    break
                self.cond.wait(left)
        why = "the daemon exited (%s)" % self.proc.poll() if self.eof else "timed out after %.1fs" % timeout
        raise harness.HarnessError(
            "%s waiting for a line matching %r; log since then:\n%s" % (why, pattern, self.text(since)[-4000:])
        )

    def passes(self, since=0):
        """The finished passes from `since` on, as dicts of ints (ms a float)."""
        out = []
        for i, t, m in self.find(PASS_FINISHED.pattern, since):
            p = {k: int(v) for k, v in m.groupdict().items() if k != "ms"}
            p.update(ms=float(m.group("ms")), index=i, time=t)
            out.append(p)
        return out

    def wait_pass_after(self, index, timeout=5.0):
        """The first pass that finishes after log line `index`."""
        self.wait_line(PASS_FINISHED.pattern, index, timeout)
        return self.passes(index)[0]

    def servers_counted(self, since=0):
        """How many servers the first sweep from `since` on counted (log_level debug)."""
        m = self.find(r"^debug: (\d+) servers?; CLAIMS.PACK: ", since)
        return int(m[0][2].group(1)) if m else None

    def wait_quiet(self, since, quiet=0.5, timeout=10.0):
        """Until no pass started or finished for `quiet` seconds and none is running."""
        deadline = time.monotonic() + timeout
        while True:
            with self.cond:
                events = [(t, line) for t, line in self.lines[since:] if PASS_STARTED.search(line) or
                          PASS_FINISHED.search(line)]
            idle = time.monotonic() - (events[-1][0] if events else 0)
            if (not events or PASS_FINISHED.search(events[-1][1])) and idle >= quiet:
                return
            if time.monotonic() >= deadline:
                raise harness.HarnessError("passes did not stop within %.1fs:\n%s" % (timeout, self.text(since)[-3000:]))
            time.sleep(0.05)

    # process ---------------------------------------------------------------

    def running(self):
        return self.proc.poll() is None

    def signal(self, sig):
        os.kill(self.pid, sig)

    def stop(self, timeout=5.0):
        """SIGTERM; the exit code (SIGKILL and a failure if it does not exit in time)."""
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                stacks = self.stacks()
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
                raise harness.HarnessError("the daemon ignored SIGTERM for %.1fs%s" % (timeout, stacks))
        self.reader.join(timeout=5)
        self.proc.stderr.close()
        return self.proc.returncode

    def stacks(self):
        """Where each thread of a daemon that does not end is (gdb, when there), for the report."""
        gdb = shutil.which("gdb")
        if not gdb:
            return ""
        try:
            r = subprocess.run([gdb, "-p", str(self.pid), "-batch", "-ex", "thread apply all bt"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as e:
            return "\n(gdb: %s)" % e
        return "\n--- its threads:\n" + "\n".join(l for l in r.stdout.splitlines() if l.startswith(("#", "Thread")))

    def kill(self):
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        self.reader.join(timeout=5)
        self.proc.stderr.close()


def save_atomic(path, text):
    """What editors do: write a temporary file beside it, then rename it over the file."""
    tmp = os.path.join(os.path.dirname(path), ".%s.tmp-%d" % (os.path.basename(path), os.getpid()))
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def many_accounts(n, app_store="1KiB"):
    """APP and n-1 fillers, all with small limits: 10,000 x 1 KiB fits the server's JetStream totals."""
    lines = ["accounts:", "  APP:", "    jetstream:", "      max_memory: 1KiB", "      max_store: %s" % app_store]
    for i in range(n - 1):
        lines.append("  FILL%05d:\n    jetstream:\n      max_memory: 1KiB\n      max_store: 1KiB" % i)
    return "\n".join(lines) + "\n"


class DaemonBase(unittest.TestCase):
    """One fresh sandbox, server and daemon per test."""

    def setUp(self):
        self.daemon = None
        try:
            self.sb = harness.Sandbox("daemon")
        except harness.HarnessError as e:
            self.fail(str(e))
        try:
            self.sb.start_server()
            self.sb.set_setting("log_level", "debug")
        except harness.HarnessError as e:
            self.sb.cleanup()
            self.fail(str(e))
        self.example = self.sb.read("accounts.yaml")
        self.assertEqual(self.example.count("max_streams: 10\n"), 1, self.example)

    def tearDown(self):
        if self.daemon:
            self.daemon.kill()
            if os.environ.get("KEEP_SANDBOX"):
                with open(os.path.join(self.sb.root, "daemon.log"), "w") as f:
                    f.write(self.daemon.text())
        self.sb.cleanup()

    # helpers -----------------------------------------------------------------

    def start_daemon(self, timeout=15.0):
        """Start `run`; the first pass, which must not fail."""
        self.daemon = Daemon(self.sb.t["accountd"], self.sb.conf)
        p = self.daemon.wait_pass_after(0, timeout)
        self.assertEqual(p["n"], 1)
        self.assertEqual(p["failed"], 0, self.daemon.text())
        return p

    def example_with(self, streams):
        """The example accounts file with APP's max_streams changed."""
        return self.example.replace("max_streams: 10\n", "max_streams: %d\n" % streams)

    def save(self, text):
        save_atomic(self.sb.accounts_file, text)

    def key_of(self, name):
        if not hasattr(self, "_keys"):
            self._keys = self.sb.account_keys()
        return self._keys[name]

    def limits_of(self, name):
        jwt = self.sb.lookup_jwt(self.key_of(name))
        self.assertIsNotNone(jwt, "the resolver holds no JWT for %s" % name)
        return jwt_claims(jwt)["nats"]["limits"]

    def wait_streams(self, name, want, timeout):
        poll(lambda: self.limits_of(name).get("streams") == want, timeout,
             "%s's JWT on the server to carry streams = %d" % (name, want), interval=0.1)

    def assertInSync(self):
        r = self.sb.accountd("plan", "--detailed-exitcode")
        self.assertEqual(r.returncode, 0, "plan --detailed-exitcode: exit %d\n%s%s\n--- daemon\n%s" % (
            r.returncode, r.stdout, r.stderr, self.daemon.text()[-3000:]))

    def assertNoErrors(self, since=0):
        errors = [m.string for _, _, m in self.daemon.find(r"^error: ", since)]
        self.assertEqual(errors, [], self.daemon.text(since)[-3000:])

    # tests -------------------------------------------------------------------

class DaemonTest(DaemonBase):
    """The daemon's triggers, files, signals and servers, one sandbox each."""

    def test_start_creates_examples_and_stays_up(self):
        p = self.start_daemon()
        self.assertEqual((p["checked"], p["changed"]), (3, 3), self.daemon.text())
        for name in EXAMPLE_ACCOUNTS:
            self.assertTrue(self.daemon.find(r"^%s created\b" % name, 0), "%s created:\n%s" % (name, self.daemon.text()))
        # A pass with network round trips cannot take 0 ms: the figure must come
        # from the clock, not from the loop's cached iteration time.
        self.assertGreater(p["ms"], 0.0, "pass 1 reports its real duration:\n" + self.daemon.text())
        self.assertEqual(set(self.sb.account_keys()), set(EXAMPLE_ACCOUNTS))
        self.assertEqual(self.limits_of("APP").get("streams"), 10)
        time.sleep(0.5)
        self.assertTrue(self.daemon.running(), "the daemon exited after its first pass:\n" + self.daemon.text())
        self.assertInSync()
        self.assertNoErrors()

    def test_edit_during_start_is_not_lost(self):
        # A long comment makes reading the file take a while: the save lands
        # after the daemon has read the file and (without care) before it
        # watches the folder, where no event would ever report it.
        padding = ("# " + "x" * 97 + "\n") * 400000
        self.sb.write_accounts(self.example + padding)
        size = os.path.getsize(self.sb.accounts_file)
        tmp = self.sb.write("edited.tmp", self.example_with(77))
        self.daemon = Daemon(self.sb.t["accountd"], self.sb.conf)
        io = "/proc/%d/io" % self.daemon.pid

        def bytes_read():
            try:
                with open(io) as f:
                    return int(next(l for l in f if l.startswith("rchar:")).split()[1])
            except (OSError, StopIteration, ValueError):
                return 0

        deadline = time.monotonic() + 10
        while bytes_read() < size and self.daemon.running() and time.monotonic() < deadline:
            pass
        os.rename(tmp, self.sb.accounts_file)
        self.assertTrue(self.daemon.running(), self.daemon.text())
        self.daemon.wait_pass_after(0, timeout=10)
        poll(lambda: self.sb.accountd("plan", "--detailed-exitcode").returncode == 0, 5,
             "the daemon to apply the file saved while it started (max_streams 77)", interval=0.2)
        self.assertEqual(self.limits_of("APP").get("streams"), 77)

    def test_sighup_while_starting_does_not_kill_the_daemon(self):
        # Found by tests/convergence (a reload right after a restart): SIGHUP's
        # default action ends a process, and the daemon blocked it only after
        # reading its files. A long comment makes the read take a while; the
        # SIGHUP lands while the file is parsed and must wait for the loop.
        padding = ("# " + "x" * 97 + "\n") * 400000
        self.sb.write_accounts(self.example + padding)
        size = os.path.getsize(self.sb.accounts_file)
        self.daemon = Daemon(self.sb.t["accountd"], self.sb.conf)
        io = "/proc/%d/io" % self.daemon.pid

        def bytes_read():
            try:
                with open(io) as f:
                    return int(next(l for l in f if l.startswith("rchar:")).split()[1])
            except (OSError, StopIteration, ValueError):
                return 0

        deadline = time.monotonic() + 10
        while bytes_read() < size and self.daemon.running() and time.monotonic() < deadline:
            pass
        self.daemon.signal(signal.SIGHUP)
        self.daemon.wait_line(r"^reloading on SIGHUP$", 0, timeout=15)
        self.assertTrue(self.daemon.running(), "SIGHUP during the start ended the daemon (%s):\n%s" % (
            self.daemon.proc.poll(), self.daemon.text()))
        self.daemon.wait_pass_after(0, timeout=15)
        self.assertInSync()
        self.assertEqual(self.daemon.stop(), 0, self.daemon.text())

    def test_one_save_one_pass(self):
        # An editor's save is a temporary file renamed over the accounts file:
        # two events (the temporary name moved away, the file moved in). Both
        # are taken before the pass starts, so one save is one pass, however the
        # loop is scheduled.
        self.start_daemon()
        self.key_of("APP")
        for i in range(1, 11):
            self.daemon.wait_quiet(self.daemon.mark(), quiet=0.2)
            since = self.daemon.mark()
            self.save(self.example_with(10 + i))
            self.daemon.wait_line(r"^APP updated: max_streams \d+ -> %d$" % (10 + i), since, timeout=5)
            self.daemon.wait_quiet(since, quiet=0.3)
            passes = self.daemon.passes(since)
            self.assertEqual(len(passes), 1, "save %d brought %d passes:\n%s" % (i, len(passes), self.daemon.text(since)))
        self.assertNoErrors()

    def test_burst_of_200_saves_coalesces(self):
        self.start_daemon()
        self.key_of("APP")
        # A burst is 200 saves spread over one second, 5 ms apart. On a loaded
        # machine this test may itself be descheduled in the middle of one,
        # which would then be no burst: such a try is let go by (the daemon
        # settles) and made again; three tries too slow skip the test.
        for attempt in range(3):
            since = self.daemon.mark()
            t0 = time.monotonic()
            for i in range(1, 201):
                self.save(self.example_with(i + 200 * attempt))
                delay = t0 + i * 0.005 - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            burst = time.monotonic() - t0
            self.wait_streams("APP", 200 * (attempt + 1), timeout=10)
            self.daemon.wait_quiet(since)
            if burst < 1.5:
                break
        else:
            self.skipTest("this machine could not write 200 saves within 1.5 s (three tries: the last took %.2f s)"
                          % burst)
        passes = self.daemon.passes(since)
        self.assertGreaterEqual(len(passes), 1)
        self.assertLess(len(passes), 40, "%d passes for 200 saves in %.2fs:\n%s" % (
            len(passes), burst, self.daemon.text(since)[-3000:]))
        sys.stderr.write("\n  200 saves in %.2f s: %d passes\n" % (burst, len(passes)))
        self.assertEqual(sum(p["failed"] for p in passes), 0, self.daemon.text(since)[-3000:])
        # Every pass of the burst was incremental: one account.
        self.assertTrue(all(p["checked"] <= 1 for p in passes), self.daemon.text(since)[-3000:])
        self.assertInSync()
        self.assertNoErrors(since)
        self.assertTrue(self.daemon.running())

    def test_sighup_storm_coalesces(self):
        self.start_daemon()
        # A storm is 50 SIGHUPs within 0.1 s. On a loaded machine this test may
        # itself be descheduled in the middle of one, which would then be no
        # storm: such a try is let go by (the daemon settles) and made again.
        for _ in range(5):
            since = self.daemon.mark()
            t0 = time.monotonic()
            for i in range(1, 51):
                self.daemon.signal(signal.SIGHUP)
                delay = t0 + i * 0.0015 - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            storm = time.monotonic() - t0
            self.daemon.wait_line(r"^reloading on SIGHUP$", since)
            # The reload's pass first: under load it can start more than the
            # quiet time after the line above (CI, 2026-12-01: 0 passes seen).
            self.daemon.wait_line(PASS_FINISHED.pattern, since, timeout=30)
            self.daemon.wait_quiet(since)
            if storm < 0.1:
                break
        else:
            self.skipTest("this machine could not send 50 SIGHUPs within 0.1 s (five tries: the last took %.3f s)"
                          % storm)
        passes = self.daemon.passes(since)
        self.assertGreaterEqual(len(passes), 1)
        self.assertLess(len(passes), 5, "%d passes for 50 SIGHUPs:\n%s" % (len(passes), self.daemon.text(since)))
        sys.stderr.write("\n  50 SIGHUPs in %.0f ms: %d passes\n" % (storm * 1000, len(passes)))
        self.assertEqual(sum(p["failed"] + p["changed"] for p in passes), 0, self.daemon.text(since))
        self.assertTrue(self.daemon.running(), "the daemon exited in the SIGHUP storm:\n" + self.daemon.text())
        self.assertInSync()
        # Still listening: an edit after the storm is applied.
        self.key_of("APP")
        mark = self.daemon.mark()
        self.save(self.example_with(11))
        self.daemon.wait_line(r"^APP updated: max_streams 10 -> 11$", mark, timeout=2)
        self.assertEqual(self.limits_of("APP").get("streams"), 11)
        self.assertNoErrors()

    def test_bad_edit_keeps_limits_and_fix_applies(self):
        self.start_daemon()
        jwt_before = self.sb.lookup_jwt(self.key_of("APP"))
        bad = self.example.replace("max_streams: 10\n", "max_streams: ten\n").replace(
            "max_consumers: 100\n", "max_consumers: -5\n")
        lines = bad.splitlines()
        expect = []
        for needle in ("max_streams: ten", "max_consumers: -5"):
            row = next(i for i, l in enumerate(lines) if needle in l)
            col = lines[row].index(needle.split(": ")[1])
            expect.append("%s:%d:%d: " % (self.sb.accounts_file, row + 1, col + 1))

        since = self.daemon.mark()
        self.save(bad)
        done, _, _ = self.daemon.wait_line(r"^error: accounts file rejected; keeping the last good file in force$",
                                           since, timeout=2)
        for where in expect:
            self.assertTrue(self.daemon.find(r"^error: " + re.escape(where), since),
                            "an error names %s:\n%s" % (where, self.daemon.text(since)))
        p = self.daemon.wait_pass_after(done)
        self.assertEqual((p["changed"], p["failed"]), (0, 0), self.daemon.text(since))
        self.assertEqual(self.sb.lookup_jwt(self.key_of("APP")), jwt_before, "the server keeps APP's JWT")
        self.assertTrue(self.daemon.running())

        since = self.daemon.mark()
        self.save(self.example_with(20))
        self.daemon.wait_line(r"^APP updated: max_streams 10 -> 20$", since, timeout=10)
        self.assertEqual(self.limits_of("APP").get("streams"), 20)
        self.assertInSync()
        self.assertNoErrors(since)

    def test_lone_edit_starts_a_pass_by_itself(self):
        # How soon is a benchmark figure (bench/run.py: edit-to-applied p50/p99);
        # here: each lone save brings its own pass, one per save, for the file.
        self.start_daemon()
        delays = []
        for i in range(10):
            time.sleep(0.15)  # past the burst window of the previous pass
            since = self.daemon.mark()
            t0 = time.monotonic()
            self.save(self.example_with(11 + i))
            _, t1, m = self.daemon.wait_line(PASS_STARTED.pattern, since, timeout=10)
            self.assertIn("(file changed)", m.string)
            self.daemon.wait_line(r"^APP updated: max_streams \d+ -> %d$" % (11 + i), since, timeout=10)
            self.daemon.wait_quiet(since, quiet=0.2)
            self.assertEqual(len(self.daemon.passes(since)), 1, self.daemon.text(since))
            delays.append((t1 - t0) * 1000)
        sys.stderr.write("\n  rename -> pass started, ms: %s\n" % " ".join("%.0f" % x for x in sorted(delays)))
        self.assertNoErrors()

    def test_limits_edit_is_applied_and_logged(self):
        self.start_daemon()
        limited = self.example.replace("      max_consumers: 100\n", "      max_consumers: 100\n    limits:\n      max_connections: 5\n", 1)
        self.assertNotEqual(limited, self.example)
        since = self.daemon.mark()
        self.save(limited)
        # Fields as in the file; omitted ones were already unlimited in the JWT nats-accountd created.
        self.daemon.wait_line(r"^APP updated: max_connections unlimited -> 5$", since, timeout=5)
        self.assertEqual(self.limits_of("APP")["conn"], 5)

        creds = self.sb.user_creds("APP")
        held = [subprocess.Popen([self.sb.t["probe"], "hold", creds, self.sb.url], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for _ in range(2)]
        try:
            for h in held:
                self.assertEqual(h.stdout.readline().strip(), "connected")
            since = self.daemon.mark()
            self.save(limited.replace("max_connections: 5\n", "max_connections: 1\n"))
            self.daemon.wait_line(r"^warning: APP: max_connections 1 is below the 2 connections the account has now; "
                                  r"the servers will close at least 1 of them$", since, timeout=5)
            self.daemon.wait_line(r"^APP updated: max_connections 5 -> 1$", since, timeout=5)
        finally:
            for h in held:
                h.stdin.close()
                h.wait(timeout=10)
                h.stdout.close()
        self.assertNoErrors()
        self.assertInSync()

    def test_deleted_file_changes_nothing_and_restore_works(self):
        self.start_daemon()
        jwts = {n: self.sb.lookup_jwt(self.key_of(n)) for n in EXAMPLE_ACCOUNTS}
        path = self.sb.accounts_file

        since = self.daemon.mark()
        os.unlink(path)
        self.daemon.wait_line(r"^warning: %s was removed; the last good file stays in force$" % re.escape(path),
                              since, timeout=2)
        # A reload while it is gone: reported, and the last good file stays in force.
        self.daemon.signal(signal.SIGHUP)
        i, _, _ = self.daemon.wait_line(r"^error: %s is missing; keeping the last good file in force" % re.escape(path),
                                        since, timeout=2)
        p = self.daemon.wait_pass_after(i)
        self.assertEqual((p["changed"], p["failed"]), (0, 0), self.daemon.text(since))
        self.assertEqual({n: self.sb.lookup_jwt(self.key_of(n)) for n in EXAMPLE_ACCOUNTS}, jwts,
                         "nothing changed on the server")
        self.assertFalse(self.daemon.find(r"^\S+ (updated|disabled|created|enabled)\b", since), self.daemon.text(since))
        self.assertTrue(self.daemon.running())

        since = self.daemon.mark()
        self.save(self.example)
        i, _, _ = self.daemon.wait_line(r"^debug: accounts file read: 3 accounts, 0 changed\b", since, timeout=2)
        p = self.daemon.wait_pass_after(i)
        self.assertEqual((p["changed"], p["failed"]), (0, 0))
        since = self.daemon.mark()
        self.save(self.example_with(12))
        self.daemon.wait_line(r"^APP updated: max_streams 10 -> 12$", since, timeout=2)
        self.assertEqual(self.limits_of("APP").get("streams"), 12)
        self.assertInSync()

    def test_account_deleted_elsewhere_is_created_again_on_next_edit(self):
        # Another tool deletes APP's JWT from the resolver while the daemon runs.
        # Its next edit looks APP up: newer servers answer with an empty message
        # ("not held here"), 2.9.10 not at all. Either way APP is gone, which is
        # neither a malformed reply nor a lost server: the pass looks at
        # everything and, with create_missing, makes APP anew: with the key its
        # seed in state_dir holds (creates are idempotent, issue 10), so the
        # users minted for it before stay valid.
        self.sb.restart_servers_with("allow_delete: false", "allow_delete: true")
        self.start_daemon()
        old_key = self.key_of("APP")
        self.sb.delete_accounts(old_key)
        self.assertIsNone(self.sb.lookup_jwt(old_key), "APP's JWT was deleted")
        since = self.daemon.mark()
        self.save(self.example_with(13))
        i, _, _ = self.daemon.wait_line(r"^APP created\b", since, timeout=5)
        p = self.daemon.wait_pass_after(i)
        self.assertEqual(p["failed"], 0, self.daemon.text(since))
        self.assertNoErrors(since)
        self.assertFalse(self.daemon.find(r"status: waiting for", since), "the servers were never lost:\n" +
                         self.daemon.text(since))
        del self._keys
        new_key = self.key_of("APP")
        self.assertEqual(new_key, old_key, "APP is created again as the key it had")
        self.assertIsNotNone(self.sb.lookup_jwt(old_key), "APP's JWT is back in the resolver")
        self.assertEqual(self.limits_of("APP").get("streams"), 13)
        self.assertInSync()

    def test_server_killed_and_restarted(self):
        self.start_daemon()
        self.key_of("APP")
        old = self.sb.servers[0]
        port = int(old.url.rsplit(":", 1)[1])

        since = self.daemon.mark()
        os.kill(old.proc.pid, signal.SIGKILL)
        old.proc.wait(timeout=5)
        self.daemon.wait_line(r"^warning: connection to the servers lost; reconnecting$", since, timeout=5)
        edit = self.daemon.mark()
        self.save(self.example_with(30))
        # The edit's pass fails against the dead server (bounded by request_timeout).
        i, _, _ = self.daemon.wait_line(r"^debug: pass \d+ started.*\(file changed\)", edit, timeout=2)
        self.daemon.wait_pass_after(i, timeout=10)
        self.assertFalse(self.daemon.find(r"^APP updated", since))
        self.assertTrue(self.daemon.running())

        conf = self.sb.read("nats-server.conf")
        self.assertEqual(conf.count("listen: 127.0.0.1:-1\n"), 1, conf)
        restart_conf = self.sb.write("nats-server-restart.conf",
                                     conf.replace("listen: 127.0.0.1:-1\n", "listen: 127.0.0.1:%d\n" % port))
        srv = harness.NatsServer(self.sb.t["server"], restart_conf, self.sb.dir, os.path.join(self.sb.root, "server2.log"))
        self.sb.servers.append(srv)
        srv.start()
        self.assertEqual(srv.url, old.url)
        restarted = self.daemon.mark()
        # cnats retries every 2 s, the daemon's own retry backs off from 1 s.
        self.daemon.wait_line(r"^(reconnected|connected) to nats://127\.0\.0\.1:%d" % port, restarted, timeout=10)
        self.daemon.wait_line(r"^APP updated: max_streams 10 -> 30$", restarted, timeout=10)
        self.assertEqual(self.limits_of("APP").get("streams"), 30)
        self.assertInSync()

    def test_hung_server_retries_with_backoff(self):
        self.start_daemon()
        srv = self.sb.servers[0]
        since = self.daemon.mark()
        harness.sigstop(srv.proc.pid)
        try:
            self.save(self.example_with(40))
            # Each pass against the hung server waits out request_timeout (2s);
            # then it announces "retry in Xs", and must wait that long (+-20% jitter
            # is inside X already) counted from its end, not from its start.
            deadline = time.monotonic() + 15
            gaps = []
            while len(gaps) < 2 and time.monotonic() < deadline:
                i, t_end, m = self.daemon.wait_line(r"^debug: status: waiting for .*, retry in ([0-9.]+)s$", since,
                                                    timeout=deadline - time.monotonic())
                j, t_next, _ = self.daemon.wait_line(PASS_STARTED.pattern, i, timeout=deadline - time.monotonic())
                gaps.append((float(m.group(1)), t_next - t_end))
                since = j
        finally:
            os.kill(srv.proc.pid, signal.SIGCONT)
        self.assertEqual(len(gaps), 2, self.daemon.text()[-3000:])
        for announced, gap in gaps:
            # The announced figure is rounded to 0.1s; sd-event may fire late, never
            # early; the lines' arrival times here may be some ms apart from when
            # they were written. Counted from the pass's start, the wait would be
            # request_timeout (2s) shorter.
            self.assertGreater(gap, announced - 0.2, "retries (announced s, waited s) %s:\n%s" % (
                ["%.1f, %.2f" % g for g in gaps], self.daemon.text()[-3000:]))
        self.daemon.wait_line(r"^APP updated: max_streams 10 -> 40$", since, timeout=15)
        self.assertInSync()

    def test_fifo_at_the_path_never_blocks(self):
        self.start_daemon()
        self.key_of("APP")
        since = self.daemon.mark()
        fifo = self.sb.path("accounts.fifo")
        os.mkfifo(fifo, 0o644)
        os.rename(fifo, self.sb.accounts_file)
        # Opening a FIFO for reading waits for a writer: the daemon must refuse
        # it instead, and keep the last good file in force.
        self.daemon.wait_line(r"^error: %s: cannot read: not a regular file" % re.escape(self.sb.accounts_file),
                              since, timeout=5)
        self.daemon.wait_line(r"^error: accounts file rejected; keeping the last good file in force$", since, timeout=5)
        mark = self.daemon.mark()
        self.save(self.example_with(13))
        self.daemon.wait_line(r"^APP updated: max_streams 10 -> 13$", mark, timeout=5)
        self.assertEqual(self.daemon.stop(timeout=5), 0)

    def test_symlink_swapped_like_a_configmap_is_followed(self):
        # Kubernetes' layout: accounts.yaml -> ..data/accounts.yaml, ..data -> ..<version>;
        # an update writes ..<new version>, then renames a new ..data link over the old one.
        def version(name, text):
            os.mkdir(self.sb.path(name))
            with open(self.sb.path(name, "accounts.yaml"), "w") as f:
                f.write(text)

        def point_data_at(name):
            tmp = self.sb.path("..data_tmp")
            os.symlink(name, tmp)
            os.rename(tmp, self.sb.path("..data"))

        version("..v1", self.example)
        point_data_at("..v1")
        os.unlink(self.sb.accounts_file)
        os.symlink("..data/accounts.yaml", self.sb.accounts_file)
        self.start_daemon()
        self.key_of("APP")

        since = self.daemon.mark()
        version("..v2", self.example_with(21))
        point_data_at("..v2")
        self.daemon.wait_line(r"^APP updated: max_streams 10 -> 21$", since, timeout=5)

        # The file the link leads to, edited in place (another folder than the link's).
        since = self.daemon.mark()
        save_atomic(self.sb.path("..v2", "accounts.yaml"), self.example_with(22))
        self.daemon.wait_line(r"^APP updated: max_streams 21 -> 22$", since, timeout=5)
        self.assertEqual(self.limits_of("APP").get("streams"), 22)
        self.assertNoErrors()

    def test_lost_file_events_bring_a_full_pass(self):
        self.start_daemon()
        self.key_of("APP")
        with open("/proc/sys/fs/inotify/max_queued_events") as f:
            max_events = int(f.read())
        since = self.daemon.mark()
        # While the daemon is stopped, more events than its inotify queue holds
        # (two names in turn: the kernel merges repeats of the last event), then
        # the edit, whose event is dropped with the overflow.
        harness.sigstop(self.daemon.pid)
        try:
            names = [self.sb.path("noise-a"), self.sb.path("noise-b")]
            for i in range(max_events + 100):
                with open(names[i % 2], "w") as f:
                    f.write("x")
            self.save(self.example_with(31))
        finally:
            self.daemon.signal(signal.SIGCONT)
        self.daemon.wait_line(r"^warning: file events were lost \(inotify queue overflow\)", since, timeout=10)
        self.daemon.wait_line(r"^APP updated: max_streams 10 -> 31$", since, timeout=10)
        i, _, _ = self.daemon.wait_line(r"^debug: pass \d+ started \(full\)", since, timeout=5)
        self.assertTrue(self.daemon.running())

    def test_reload_applies_a_new_resync_interval_at_once(self):
        self.sb.set_setting("resync_interval", "0")
        self.start_daemon()
        since = self.daemon.mark()
        time.sleep(1.5)
        self.assertEqual(self.daemon.passes(since), [], "no resync with resync_interval = 0")

        self.sb.set_setting("resync_interval", "1s")
        self.daemon.signal(signal.SIGHUP)
        i, _, _ = self.daemon.wait_line(r"^reloading on SIGHUP$", since, timeout=5)
        reload_pass = self.daemon.wait_pass_after(i)
        # Two more full passes from the timer alone, about a second apart.
        j, _, _ = self.daemon.wait_line(r"^debug: pass %d started \(full\)$" % (reload_pass["n"] + 1), i, timeout=5)
        self.daemon.wait_line(r"^debug: pass %d started \(full\)$" % (reload_pass["n"] + 2), j, timeout=5)

        self.sb.set_setting("resync_interval", "0")
        mark = self.daemon.mark()
        self.daemon.signal(signal.SIGHUP)
        i, _, _ = self.daemon.wait_line(r"^reloading on SIGHUP$", mark, timeout=5)
        self.daemon.wait_pass_after(i)
        self.daemon.wait_quiet(i, quiet=0.3)
        quiet_from = self.daemon.mark()
        time.sleep(2.5)
        self.assertEqual(self.daemon.passes(quiet_from), [], "resync_interval = 0 again stops the timer:\n" +
                         self.daemon.text(mark))
        self.assertNoErrors()

    def test_reload_refuses_a_mode_change_and_bad_secrets(self):
        self.start_daemon()
        self.key_of("APP")
        since = self.daemon.mark()
        self.sb.set_setting("mode", "config")
        self.daemon.signal(signal.SIGHUP)
        self.daemon.wait_line(r"^error: .*nats-accountd\.conf: mode cannot change on reload \(operator -> config\); "
                              r"restart the service to switch; keeping the running settings$", since, timeout=5)
        self.sb.set_setting("mode", "operator")

        mark = self.daemon.mark()
        os.chmod(self.sb.sys_creds, 0o644)
        self.daemon.signal(signal.SIGHUP)
        self.daemon.wait_line(r"^error: .*sys\.creds is readable by group or others .*; keeping the running settings$",
                              mark, timeout=5)
        os.chmod(self.sb.sys_creds, 0o600)

        # Still the operator-mode daemon it was: an edit is applied.
        mark = self.daemon.mark()
        self.save(self.example_with(14))
        self.daemon.wait_line(r"^APP updated: max_streams 10 -> 14$", mark, timeout=5)
        self.assertEqual(self.daemon.stop(), 0)

    def test_request_timeout_checked_against_the_watchdog(self):
        env = {k: v for k, v in os.environ.items() if k not in SYSTEMD_ENV}
        env["WATCHDOG_USEC"] = "4000000"
        self.sb.set_setting("request_timeout", "3s")
        r = subprocess.run([self.sb.t["accountd"], "-c", self.sb.conf, "run"], env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
        self.assertEqual(r.returncode, 78, r.stderr)
        self.assertIn("request_timeout = 3s is too long under WatchdogSec=4s", r.stderr)
        self.assertIn("make it at most 2s", r.stderr)

    def test_sigterm_exits_zero(self):
        self.start_daemon()
        since = self.daemon.mark()
        rc = self.daemon.stop(timeout=10)
        self.assertEqual(rc, 0, self.daemon.text())
        self.assertTrue(self.daemon.find(r"^stopping on SIGTERM$", since), self.daemon.text(since))


class DaemonRequestCountTest(DaemonBase):
    """The requests of one edit with 100 and with 10,000 accounts (a meson test
    of its own: the 10,000-account apply and pass take most of DaemonTest's time)."""

    def request_count_of_one_edit(self, n_accounts):
        """Apply an n-account file, start the daemon, edit APP: the pass that applied it."""
        # What is counted here is requests, not time: a loaded machine (the
        # suite runs once per server version) may take the server past the
        # default 2 s before the first message of a 10,000-JWT PACK.
        self.sb.set_setting("request_timeout", "10s")
        self.sb.write_accounts(many_accounts(n_accounts))
        r = self.sb.accountd("apply", timeout=120)
        self.assertEqual(r.returncode, 0, "apply of %d accounts: %s" % (n_accounts, r.stderr[-2000:]))
        first = self.start_daemon(timeout=30)
        # Everything (plus the system account, which is not declared) was swept.
        self.assertEqual((first["checked"], first["changed"]), (n_accounts, 0), self.daemon.text()[-2000:])
        since = self.daemon.mark()
        save_atomic(self.sb.accounts_file, many_accounts(n_accounts, app_store="2KiB"))
        i, _, _ = self.daemon.wait_line(r"^APP updated: max_store 1KiB -> 2KiB$", since, timeout=5)
        p = self.daemon.wait_pass_after(i)
        self.assertEqual((p["checked"], p["changed"], p["failed"]), (1, 1, 0), self.daemon.text(since))
        self.assertEqual(self.daemon.stop(), 0)
        return first, p

    def test_one_account_edit_costs_constant_requests(self):
        first_100, edit_100 = self.request_count_of_one_edit(100)
        self.daemon = None
        first_10k, edit_10k = self.request_count_of_one_edit(10000)

        # The full sweep: STATSZ (the servers and what they are linked to), VARZ
        # (what each trusts), CLAIMS.PACK, one SERVER.PING.ACCOUNTZ (which accounts
        # each server has loaded), and INFO only of the declared accounts some
        # server has loaded: none here (made by apply, no client ever used them).
        self.assertEqual(first_100["requests"], 4)
        self.assertEqual(first_10k["requests"], 4)
        # The duration of a pass is measured, not the loop's cached time: a sweep
        # of 10,000 accounts takes about as long as its start and end lines are apart.
        started = self.daemon.find(r"^debug: pass 1 started", 0)[0][1]
        wall_ms = (first_10k["time"] - started) * 1000
        self.assertGreater(first_10k["ms"], 0.5 * wall_ms - 20,
                           "pass 1 reports %.3f ms; its log lines are %.0f ms apart" % (first_10k["ms"], wall_ms))

        # One edit, however large the file:
        #   1. ACCOUNT.<APP>.CLAIMS.LOOKUP  refresh APP's JWT (another tool may have changed it)
        #   2. ACCOUNT.<APP>.INFO           the servers' state of APP, for the plan
        #   3. ACCOUNT.<APP>.JSZ            its usage (vs the new limits); a pass of a few accounts
        #                                   sends 2 and 3 together, in one round trip
        #   4. ACCOUNT.<APP>.CLAIMS.UPDATE  the re-signed JWT
        #   5. ACCOUNT.<APP>.INFO           verify: every server has it loaded and complete
        self.assertEqual(edit_100["requests"], edit_10k["requests"])
        self.assertEqual(edit_10k["requests"], 5)


class LongPassBase(DaemonBase):
    """A first pass of LONG_PASS creates: what the loop and the pass thread do
    while it runs. Two classes, two meson tests side by side (daemon-long-pass,
    daemon-long-stop): they take most of this file's time."""

    def setUp(self):
        super().setUp()
        # Not the default 2 s: beside a soak or a second CI run the server
        # once took longer than that over 256 creates in a row, the daemon
        # gave the pass up as it must, and the test wants one pass without
        # failures. Still less than the 10 s a stop is given.
        self.sb.set_setting("request_timeout", "5s")

    def long_pass(self, n=LONG_PASS):
        """Start the daemon on n accounts to create (several seconds of pushes);
        return once it is creating them (the first seeds are on disk)."""
        self.sb.write_accounts(many_accounts(n))
        self.daemon = Daemon(self.sb.t["accountd"], self.sb.conf)
        state = self.sb.path("state")
        poll(lambda: harness.state_seeds(state), 60, "the first batch of seeds", interval=0.01)


class DaemonLongPassTest(LongPassBase):
    """The loop and systemd's notifications while a long first pass runs."""

    @needs_long_pass
    def test_long_pass_keeps_the_loop_responsive(self):
        self.long_pass()
        # Signals and edits are served while the pass goes on...
        since = self.daemon.mark()
        self.save(many_accounts(LONG_PASS, app_store="2KiB"))
        self.daemon.signal(signal.SIGHUP)
        self.daemon.wait_line(r"^reloading on SIGHUP$", since, timeout=10)
        self.assertFalse(self.daemon.find(PASS_FINISHED.pattern, 0), "handled while the first pass still runs")
        # ... and what they ask for is done by the next pass.
        first = self.daemon.wait_pass_after(0, timeout=120)
        self.assertEqual((first["n"], first["failed"]), (1, 0), self.daemon.text()[-2000:])
        self.daemon.wait_line(r"^APP updated: max_store 1KiB -> 2KiB$", since, timeout=60)
        self.daemon.wait_quiet(since, timeout=60)
        self.assertNoErrors()

    @needs_long_pass
    def test_systemd_notifications_during_a_long_pass(self):
        notify = os.path.join(self.sb.root, "notify.sock")
        self.sb.write_accounts(many_accounts(LONG_PASS))
        self.daemon = Daemon(self.sb.t["accountd"], self.sb.conf, notify_path=notify)
        state = self.sb.path("state")
        poll(lambda: harness.state_seeds(state), 60, "the first batch of seeds", interval=0.01)
        # Starting: more time asked for while the first pass makes progress.
        poll(lambda: [m for _, m in self.daemon.notified if m.startswith("EXTEND_TIMEOUT_USEC=")], 10,
             "EXTEND_TIMEOUT_USEC while the first pass runs")
        self.daemon.signal(signal.SIGHUP)
        poll(lambda: [m for _, m in self.daemon.notified if m == "RELOADING=1"], 5, "RELOADING=1")
        # READY=1 once the first pass is done, and again only after the pass
        # that did the reload (the one after it).
        i, _, _ = self.daemon.wait_line(r"^debug: pass 2 started \(full\) \(file changed\) \(reload\)$", 0,
                                        timeout=120)
        reload_pass = self.daemon.wait_pass_after(i, timeout=120)
        ready = lambda: [t for t, m in self.daemon.notified if m == "READY=1"]  # noqa: E731
        poll(lambda: len(ready()) >= 2, 10, "READY=1 after the reload's pass")
        self.assertEqual(len(ready()), 2, self.daemon.notified)
        self.assertGreaterEqual(ready()[1], reload_pass["time"] - 0.5, "the reload's READY=1 came before its pass ended")


class DaemonLongStopTest(LongPassBase):
    """SIGTERM during long first passes."""

    # Like the long-pass tests, a test of the daemon's threads (and libnats'):
    # once, not on every server of the matrix.
    @needs_long_pass
    def test_sigterm_while_replies_arrive_does_not_crash(self):
        # Found by the soak (seed 62755001): the daemon died of SIGSEGV on a
        # SIGTERM during a pass. libnats 3.4.1's reader thread could use a
        # subscription the daemon had just freed as a request ended with
        # replies still coming (nats.c #637). Stopped at random moments of a
        # first pass that streams 5,000 accounts (CLAIMS.PACK), the daemon
        # must exit 0 every time. Before the fix, about 1 stop in 40 crashed
        # under AddressSanitizer (tools/test-all.sh runs this there too); a
        # plain build rarely shows it. DAEMON_TEST_STOP_ROUNDS sets the count.
        import random
        rounds = int(os.environ.get("DAEMON_TEST_STOP_ROUNDS", "25"))
        self.sb.write_accounts(many_accounts(5000))
        r = self.sb.accountd("-c", self.sb.conf, "apply", timeout=600)
        self.assertEqual(r.returncode, 0, r.stderr[-2000:])
        # How long a whole first pass takes here: the stops fall inside it.
        self.daemon = Daemon(self.sb.t["accountd"], self.sb.conf)
        p = self.daemon.wait_pass_after(0, timeout=120)
        self.assertEqual(self.daemon.stop(timeout=15), 0, self.daemon.text()[-3000:])
        length = p["ms"] / 1000.0
        rng = random.Random(62755001)
        for i in range(rounds):
            self.daemon = Daemon(self.sb.t["accountd"], self.sb.conf)
            self.daemon.wait_line(PASS_STARTED.pattern, 0, timeout=30)
            delay = rng.uniform(0, length)
            time.sleep(delay)
            rc = self.daemon.stop(timeout=15)
            self.assertEqual(rc, 0, "stop %d of %d, %.0f ms into a pass of %.0f ms:\n%s" % (
                i + 1, rounds, delay * 1000, p["ms"], self.daemon.text()[-3000:]))

    @needs_long_pass
    def test_sigterm_during_a_long_pass_stops_it_cleanly(self):
        self.long_pass()
        since = self.daemon.mark()
        rc = self.daemon.stop(timeout=10)
        self.assertEqual(rc, 0, self.daemon.text(since))
        self.assertTrue(self.daemon.find(r"^stopping on SIGTERM$", since))
        created = len(self.daemon.find(r"^FILL\d+ created\b", 0))
        self.assertLess(created, LONG_PASS - 1, "the pass was stopped, not finished")
        # Accounts a stop kept from being pushed are not failures to report.
        self.assertNoErrors()
        # Nothing half written: every account the servers hold has its seed on disk.
        state = self.sb.path("state")
        seeds = set(harness.state_seeds(state))
        r = self.sb.probe("gather", self.sb.sys_creds, self.sb.url, "$SYS.REQ.CLAIMS.LIST", "", 5000, 1)
        held = {k for k in json.loads(r.stdout)["data"] if k not in self.sb.read("nats-server.conf")}
        self.assertGreaterEqual(len(held), created)
        self.assertEqual(held - seeds, set(), "accounts on the server without a seed")
        # A new start finishes the job with the same keys: one per name.
        self.daemon = Daemon(self.sb.t["accountd"], self.sb.conf)
        p = self.daemon.wait_pass_after(0, timeout=120)
        self.assertEqual(p["failed"], 0, self.daemon.text()[-2000:])
        seeds = harness.state_seeds(state)
        self.assertEqual(len(seeds), LONG_PASS, "one seed per account")
        self.assertEqual(len(set(seeds.values())), LONG_PASS, "one key per name")
        self.assertInSync()


class SlowPackTest(unittest.TestCase):
    """A resolver whose CLAIMS.PACK takes long to start, as a server with a large
    store does: it reads every JWT file before it sends the first one (about
    13 s for 100,000 on a busy host) and answers nothing else on that
    connection meanwhile. The wait for its first message is sized to the
    accounts there are, not to request_timeout, and nothing else is asked while
    it is awaited."""

    DELAY_MS = 12000  # past the 10 s every PACK is given at least

    def setUp(self):
        self.sb = harness.Sandbox("slowpack")
        self.responder = None
        try:
            # No full resolver: the only PACK responder is nats-probe slow-pack.
            conf = self.sb.read("nats-server.conf")
            conf, n = re.subn(r"(?ms)^resolver\s*\{.*?^\}\n", "resolver: MEMORY\n", conf)
            self.assertEqual(n, 1, conf)
            self.sb.write("nats-server.conf", conf)
            self.sb.start_server()
            self.sb.set_setting("request_timeout", "2s")
            self.sb.set_setting("create_missing", "yes")
            self.responder = subprocess.Popen(
                [self.sb.t["probe"], "slow-pack", self.sb.sys_creds, self.sb.url, str(self.DELAY_MS)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            self.assertEqual(self.responder.stdout.readline().strip(), "ready")
        except BaseException:
            self.tearDown()
            raise

    def tearDown(self):
        if self.responder and self.responder.poll() is None:
            self.responder.kill()
            self.responder.communicate(timeout=10)
        self.sb.cleanup()

    def test_wait_for_a_pack_grows_with_the_accounts(self):
        # 10,000 accounts declared: the PACK's first message is awaited 10 s +
        # 10,000 x 0.5 ms = 15 s, past the responder's 12 s.
        self.sb.write_accounts(many_accounts(10000))
        r = self.sb.accountd("plan", "--detailed-exitcode", timeout=120)
        self.responder.kill()
        out, _ = self.responder.communicate(timeout=10)
        self.assertEqual(r.returncode, 2, "plan waits out the slow PACK: %s" % r.stderr[-2000:])
        self.assertEqual(sum(1 for line in r.stdout.splitlines() if line.startswith("+ ")), 10000, r.stdout[-500:])
        self.assertEqual(out.splitlines()[:2], ["pack asked", "pack answered"], out)
        self.assertEqual([line for line in out.splitlines() if line.startswith("asked meanwhile")], [],
                         "nothing else is asked while the PACK is awaited")

    def test_few_accounts_wait_ten_seconds(self):
        # Three accounts: 10 s, then "did not end" (the server would still be
        # reading its store), exit 69 as for any server that does not answer.
        r = self.sb.accountd("plan", timeout=120)
        self.assertEqual(r.returncode, 69, r.stdout + r.stderr)
        self.assertRegex(r.stderr, r"\$SYS\.REQ\.CLAIMS\.PACK: the reply stream from \S+ did not end "
                                   r"\(0 messages in 1\d\.\ds\)")


def stored_limit(sb, node, key, field):
    """A limit in the account's JWT in a node's resolver folder; None while the
    server is writing the file (it truncates it first)."""
    with open(os.path.join(sb.path(node), "jwt", key + ".jwt")) as f:
        text = f.read()
    return jwt_claims(text)["nats"]["limits"].get(field) if text.count(".") == 2 else None


class DaemonClusterTest(unittest.TestCase):
    """The daemon against a 3-node cluster (one per test)."""

    def setUp(self):
        self.daemon = None
        self.sb = harness.Cluster()
        try:
            self.sb.start_cluster()
            self.sb.set_setting("log_level", "debug")
        except harness.HarnessError as e:
            self.sb.cleanup()
            self.fail(str(e))

    def tearDown(self):
        if self.daemon:
            self.daemon.kill()
        self.sb.cleanup()

    def start_daemon(self):
        """A daemon whose first pass is done, on all three servers: each one a
        server whose reply it waits for."""
        self.daemon = Daemon(self.sb.t["accountd"], self.sb.conf)
        self.daemon.wait_line(r"^debug: pass 1 finished .* 0 failed", 0, timeout=30)
        self.assertEqual(self.daemon.servers_counted(), len(self.sb.servers), self.daemon.text())

    def test_push_sent_as_the_daemon_stops_is_logged(self):
        # Found by the soak (seed 74001011): a push out when SIGTERM came, not yet
        # confirmed by every server, was dropped without a line; the servers that
        # had it applied it, and the next start, finding it in force, had nothing
        # to say: a change with no journal line. Here c3 is hung, so the pass
        # waits for its reply when the stop comes; c1 and c2 have applied it.
        sb = self.sb
        # The pass waits for c3 up to request_timeout before the push (its
        # lookups) and again after it: the stop must come in the second wait,
        # which is long enough for c1 and c2 to take the push on a loaded machine.
        sb.set_setting("request_timeout", "10s")
        sb.set_setting("servers", sb.servers[0].url)
        example = sb.read("accounts.yaml")
        edited = example.replace("max_streams: 10\n", "max_streams: 41\n", 1)
        self.assertNotEqual(edited, example)
        self.start_daemon()
        key = sb.account_keys()["APP"]

        def streams(node):
            return stored_limit(sb, node, key, "streams")

        c3 = sb.servers[2]
        harness.sigstop(c3.proc.pid)
        try:
            since = self.daemon.mark()
            save_atomic(sb.accounts_file, edited)
            self.daemon.wait_line(PASS_STARTED.pattern, since, timeout=10)
            try:
                poll(lambda: streams("c1") == 41 and streams("c2") == 41, 30, "c1 and c2 to take the push",
                     interval=0.05)
            except harness.HarnessError as e:
                self.fail("%s:\n%s" % (e, self.daemon.text(since)))
            self.assertEqual(self.daemon.stop(timeout=10), 0, self.daemon.text(since))
        finally:
            os.kill(c3.proc.pid, signal.SIGCONT)
        self.assertTrue(self.daemon.find(r"^warning: APP: update sent, not confirmed before the stop: "
                                         r"max_streams 10 -> 41$", since), self.daemon.text(since))
        self.assertFalse(self.daemon.find(r"^error: ", since), self.daemon.text(since))
        # The next start finds it in force everywhere: nothing more to say.
        poll(lambda: streams("c3") == 41, 10, "c3 to take the push it had received while stopped", interval=0.1)
        self.daemon = Daemon(sb.t["accountd"], sb.conf)
        p = self.daemon.wait_pass_after(0, timeout=30)
        self.assertEqual((p["changed"], p["failed"]), (0, 0), self.daemon.text())

    def edit_while_c3_is_down(self):
        """A daemon's first pass, c3 SIGKILLed, a sweep without it, then APP's
        max_streams 10 -> 33 applied by c1 and c2. Returns (c3's server, not
        started again yet; the log mark before the edit)."""
        sb = self.sb
        self.start_daemon()
        c3 = sb.servers[2]
        again = c3.again()
        os.kill(c3.proc.pid, signal.SIGKILL)
        c3.proc.wait(timeout=10)
        sb.servers[2] = again
        # A sweep without c3 (it is not there: two servers), then the edit:
        # both servers confirm it, so nothing is left to look at again later.
        since = self.daemon.mark()
        self.daemon.signal(signal.SIGHUP)
        i, _, _ = self.daemon.wait_line(r"^debug: pass \d+ started \(full\)", since, timeout=10)
        self.daemon.wait_line(r"^debug: pass \d+ finished .* 0 failed", i, timeout=30)
        since = self.daemon.mark()
        save_atomic(sb.accounts_file, sb.read("accounts.yaml").replace("max_streams: 10\n", "max_streams: 33\n"))
        self.daemon.wait_line(r"^APP updated: max_streams 10 -> 33$", since, timeout=30)
        return again, since

    def test_server_back_with_an_old_store_gets_the_current_jwt(self):
        # Found by tests/convergence: a node down while an edit was applied to
        # the others came back with the JWTs it had (the resolvers sync only
        # every few minutes, `interval` in the server's resolver block), and a
        # client of APP on it got the old limits. The daemon's sweeps read
        # CLAIMS.PACK from one server (any) and came only at the next resync.
        # Now the server's first heartbeat brings a sweep at once, and a sweep
        # that meets a server the last one did not see asks every server for
        # the declared accounts. No resync here: only that can catch c3 up.
        sb = self.sb
        sb.set_setting("resync_interval", "0")
        again, since = self.edit_while_c3_is_down()
        key = sb.account_keys()["APP"]

        def c3_streams():
            return stored_limit(sb, "c3", key, "streams")

        self.assertEqual(c3_streams(), 10, "c3 comes back with the JWT it had")
        again.start()
        sb.wait_system_api(3, timeout=30)
        poll(lambda: c3_streams() == 33, 20, "c3 to hold APP's current JWT (max_streams 33)", interval=0.2)
        creds = sb.user_creds("APP")

        def applied():
            r = sb.probe("request", creds, again.url, "$JS.API.INFO", "", 3000)
            return r.returncode == 0 and json.loads(r.stdout).get("limits", {}).get("max_streams") == 33

        poll(applied, 20, "a user of APP on c3 to see max_streams 33", interval=0.2)

    def test_first_sweep_of_a_new_daemon_gets_a_lagging_server_current(self):
        # Found by the soak (seed 82600107): c3 was down while an edit went to
        # c1 and c2, and the daemon was killed before c3 came back, so the
        # sweep for "a server joined" never came. A new daemon has no last
        # sweep to compare with: its first one read CLAIMS.PACK from c1, found
        # APP as the file says, and c3 kept the older JWT until the resolvers
        # synced among themselves (minutes). The first sweep of a process on
        # more than one server now asks every server for the declared accounts.
        sb = self.sb
        sb.set_setting("resync_interval", "0")
        # Any server may answer CLAIMS.PACK (a queue group): without the fix
        # this fails whenever c1 or c2 answers, two times in three.
        sb.set_setting("servers", sb.servers[0].url)
        again, since = self.edit_while_c3_is_down()
        self.assertEqual(self.daemon.stop(timeout=10), 0, self.daemon.text(since))
        self.daemon = None
        key = sb.account_keys()["APP"]

        def c3_streams():
            return stored_limit(sb, "c3", key, "streams")

        again.start()
        sb.wait_system_api(3, timeout=30)
        self.assertEqual(c3_streams(), 10, "c3 comes back with the JWT it had")
        self.daemon = Daemon(sb.t["accountd"], sb.conf)
        self.daemon.wait_line(r"^debug: pass 1 finished .* 0 failed", 0, timeout=30)
        # state_dir/servers kept the servers the last sweep saw (c1 and c2):
        # c3, started since, is why every server is asked.
        self.assertTrue(self.daemon.find(r"^debug: first sweep: server \S+ was not seen by the last pass: every "
                                         r"server asked for 3 accounts in "), self.daemon.text())
        self.assertEqual(c3_streams(), 33, "c3 holds APP's current JWT after the new daemon's first pass:\n"
                         + self.daemon.text())
        # The same three servers at the next start: CLAIMS.PACK is enough.
        self.assertEqual(self.daemon.stop(timeout=10), 0, self.daemon.text())
        self.daemon = Daemon(sb.t["accountd"], sb.conf)
        self.daemon.wait_line(r"^debug: pass 1 finished .* 0 changed, 0 failed", 0, timeout=30)
        self.assertFalse(self.daemon.find(r"every server asked"), self.daemon.text())

    def test_change_taken_late_is_logged_though_the_file_changed_since(self):
        # Found by the soak (seed 64361036): a push that a hung server took only
        # once it ran again had no journal line when the file had changed in
        # between in a way that change satisfies too (here APP's `limits` key
        # removed): the daemon forgot the unconfirmed change at the re-read,
        # and the next pass found nothing to do.
        sb = self.sb
        # Not less: with c3 stopped, c1 holds back a client whose messages
        # go to c3's full route for up to 1 s each (nats-server's stall of a
        # producer), and under load a 1 s timeout then never saw c1 answer.
        sb.set_setting("request_timeout", "3s")
        # Connected to c1 (it finds c2 and c3 by itself): c3, stopped, only misses the push.
        sb.set_setting("servers", sb.servers[0].url)
        example = sb.read("accounts.yaml")
        limited = example.replace("      max_consumers: 100\n", "      max_consumers: 100\n    limits:\n"
                                  "      max_connections: 5\n", 1)
        self.assertNotEqual(limited, example)
        self.start_daemon()
        c3 = sb.servers[2]
        harness.sigstop(c3.proc.pid)
        try:
            since = self.daemon.mark()
            save_atomic(sb.accounts_file, limited)
            self.daemon.wait_line(r"^error: APP: 2 of 3 servers confirmed the update", since, timeout=30)
            since = self.daemon.mark()
            save_atomic(sb.accounts_file, example)
            self.daemon.wait_line(r"^debug: accounts file read: 3 accounts, 1 changed$", since, timeout=30)
        finally:
            os.kill(c3.proc.pid, signal.SIGCONT)
        key = sb.account_keys()["APP"]

        def c3_conn():
            return stored_limit(sb, "c3", key, "conn")

        poll(lambda: c3_conn() == 5, 20, "c3 to take the push it had received while stopped", interval=0.2)
        self.daemon.wait_line(r"^APP updated: max_connections unlimited -> 5 \(in force now, after the error "
                              r"above\)$", since, timeout=30)


if __name__ == "__main__":
    harness.main()
