#!/usr/bin/env python3
"""System test of config mode: the packaged units against Debian's nats-server.service (stdlib only).

systemd is booted as PID 1 of a private PID and mount namespace (sysns.py). In it:
  - Debian's nats-server.service (masked at boot) is unmasked and started as it
    is: /usr/sbin/nats-server -c /etc/nats-server.conf as user nats. Its config
    (in the namespace's /etc overlay) listens on a loopback port picked here,
    never 4222, and defines the accounts SYS, APP and ORDERS, APP's and ORDERS'
    blocks including nats-server/accounts.d/<ACCOUNT>.conf;
  - nats-accountd's static user comes from the shipped sysusers file, and owns
    /etc/nats-server/accounts.d;
  - the project's nats-accountd.service (only its ExecStart path changed) runs
    with the shipped config-mode drop-in (systemd/config-mode.conf, as it is)
    plus WatchdogSec=5s, and reload = external;
  - the shipped nats-accountd-reload.path/.service reload nats-server.service
    when the daemon rewrites accounts.d/.reload: the daemon's user may not
    signal user nats, and nats-server 2.9 has no RELOAD request.
Exit 77 only where booting is impossible (sysns.skip_reason) or Debian's
nats-server is not installed.
"""

import json
import os
import re
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sysns import INSIDE_ROOT, SKIP, Namespace, SetupError, log, now_usec, poll, run_suite  # noqa: E402

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNIT = "nats-accountd.service"
SERVER_UNIT = "nats-server.service"
RELOAD_PATH = "nats-accountd-reload.path"
RELOAD_SERVICE = "nats-accountd-reload.service"
DEBIAN_SERVER = "/usr/sbin/nats-server"
ETC = "/etc/nats-accountd"
FRAGMENTS = "/etc/nats-server/accounts.d"
WATCHDOG_SEC = 5
MiB = 1024 * 1024
SEED_RE = re.compile(rb"(?<![A-Z2-7])S[OAUNC][A-Z2-7]{56}(?![A-Z2-7])")
MSGID_ACCOUNT_UPDATED = "ef6d501724ef402da51511b052bb943b"
MSGID_ACCOUNT_FAILED = "4d481261b3fc41f0b25b7a1d17c42859"


def accounts_yaml(store):
    return ("accounts:\n  APP:\n    jetstream:\n      max_memory: 64MiB\n      max_store: %s\n"
            "  ORDERS:\n    jetstream: disabled\n" % store)


def free_port():
    """A loopback port nobody listens on now (never 4222)."""
    while True:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if port != 4222:
            return port


class Env:
    def __init__(self):
        self.built = os.path.abspath(os.environ["NATS_ACCOUNTD"])
        self.probe = os.path.abspath(os.environ["NATS_PROBE"])
        builddir = os.path.dirname(self.built)
        self.unit_src = os.environ.get("NATS_ACCOUNTD_UNIT") or os.path.join(builddir, "systemd", UNIT)
        self.outdir = __import__("tempfile").mkdtemp(prefix="nats-accountd-systest-config.")
        self.ns = Namespace(self.outdir)
        self.port = free_port()

    # set-up ------------------------------------------------------------------

    def setup(self):
        ns = self.ns
        ns.boot()
        self.binary = ns.install(self.built, INSIDE_ROOT + "/bin/nats-accountd")
        sysusers = ns.install(os.path.join(TOP, "systemd", "nats-accountd.sysusers"), INSIDE_ROOT + "/sysusers.conf", 0o644)
        ns.run(["systemd-sysusers", sysusers])
        ns.run(["install", "-d", "-o", "nats-accountd", "-g", "nats-accountd", "-m", "0755", FRAGMENTS])
        ns.run(["install", "-d", "-o", "nats", "-g", "nats", "-m", "0700", "/var/lib/nats-server"])
        ns.mkdir(ETC)
        # The system user of SYS is an nkey user: its seed for the daemon, its public key for the server.
        seed = subprocess.run([self.probe, "gen-seed", "user"], stdout=subprocess.PIPE, text=True, check=True).stdout.strip()
        self.write(ETC + "/accountd.nk", "# nats-accountd's user of SYS\n%s\n" % seed, 0o600)
        self.seed = seed.encode()
        pub = subprocess.run([self.probe, "pubkey-of-seed", ns.path(ETC + "/accountd.nk")], stdout=subprocess.PIPE,
                             text=True, check=True).stdout.strip()
        for name in ("APP", "ORDERS"):
            self.write("%s/%s.conf" % (FRAGMENTS, name), "# written by nats-accountd\n", 0o644)
        self.write("/etc/nats-server.conf",
                   "server_name: systest\n"
                   "listen: 127.0.0.1:%d\n"
                   "jetstream { store_dir: \"/var/lib/nats-server\", max_mem: 256M, max_file: 1G }\n"
                   "accounts {\n"
                   "  SYS { users = [ { nkey: %s } ] }\n"
                   "  APP {\n    include \"nats-server/accounts.d/APP.conf\"\n  }\n"
                   "  ORDERS {\n    include \"nats-server/accounts.d/ORDERS.conf\"\n  }\n"
                   "}\n"
                   "system_account: SYS\n" % (self.port, pub))
        self.write(ETC + "/accounts.yaml", accounts_yaml("256MiB"))
        self.write(ETC + "/nats-accountd.conf",
                   "[nats]\nservers = nats://127.0.0.1:%d\ncredentials = accountd.nk\nrequest_timeout = 2s\n"
                   "[accounts]\nfile = accounts.yaml\nmode = config\n"
                   "[config]\nfragments_dir = %s\nserver_config = /etc/nats-server.conf\nreload = external\n"
                   "[daemon]\nlog_level = debug\n" % (self.port, FRAGMENTS))
        self.install_units()
        r = ns.run(["systemctl", "unmask", "--runtime", SERVER_UNIT], check=False)
        ns.run(["systemctl", "daemon-reload"])
        r = ns.run(["systemctl", "start", SERVER_UNIT], check=False, timeout=30)
        if r.returncode != 0:
            raise SetupError("cannot start %s: %s%s\n%s" % (SERVER_UNIT, r.stdout, r.stderr, self.journal_text(SERVER_UNIT)))
        poll(self.system_api_up, 20, "nats-server answering $SYS.REQ.SERVER.PING")
        ns.run(["systemctl", "start", RELOAD_PATH])

    def install_units(self):
        with open(self.unit_src) as f:
            text = f.read()
        new, n = re.subn(r"(?m)^ExecStart=\S*/nats-accountd ", "ExecStart=%s " % self.binary, text)
        if n != 1:
            raise SetupError("%s: expected one ExecStart=.../nats-accountd line" % self.unit_src)
        with open(self.ns.path("/run/systemd/system/" + UNIT), "w") as f:
            f.write(new)
        dropins = self.ns.path("/run/systemd/system/%s.d" % UNIT)
        os.makedirs(dropins, exist_ok=True)
        with open(os.path.join(TOP, "systemd", "config-mode.conf")) as f:
            shipped = f.read()
        with open(os.path.join(dropins, "config-mode.conf"), "w") as f:
            f.write(shipped)
        with open(os.path.join(dropins, "50-systest.conf"), "w") as f:
            # LeakSanitizer cannot work in the unit's sandbox (see test_systemd.py).
            f.write("[Service]\nWatchdogSec=%ds\nEnvironment=ASAN_OPTIONS=detect_leaks=0\n" % WATCHDOG_SEC)
        for name in (RELOAD_PATH, RELOAD_SERVICE):
            with open(os.path.join(TOP, "systemd", name)) as f:
                unit = f.read()
            with open(self.ns.path("/run/systemd/system/" + name), "w") as f:
                f.write(unit)

    # helpers -----------------------------------------------------------------

    def write(self, inside, text, mode=0o644):
        p = self.ns.path(inside)
        tmp = p + ".systest-tmp"
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, p)

    def read(self, inside):
        with open(self.ns.path(inside)) as f:
            return f.read()

    def probe_request(self, subject, timeout_ms=1500):
        return subprocess.run([self.probe, "request", self.ns.path(ETC + "/accountd.nk"),
                               "nats://127.0.0.1:%d" % self.port, subject, "", str(timeout_ms)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)

    def system_api_up(self):
        return self.probe_request("$SYS.REQ.SERVER.PING", 500).returncode == 0

    def reserved(self, account):
        r = self.probe_request("$SYS.REQ.ACCOUNT.%s.JSZ" % account)
        if r.returncode != 0:
            return None
        d = json.loads(r.stdout).get("data")
        return (d["reserved_memory"], d["reserved_storage"]) if d else "off"

    def show(self, unit=UNIT, props=("ActiveState", "SubState", "Result", "NRestarts", "MainPID", "StatusText",
                                     "ExecMainStatus")):
        r = self.ns.run(["systemctl", "show", unit] + ["-p" + p for p in props])
        return dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)

    def uid_of(self, pid):
        """The uid of a process of the namespace (pid as the namespace numbers it)."""
        with open(self.ns.path("/proc/%s/status" % pid)) as f:
            return int(next(l for l in f if l.startswith("Uid:")).split()[1])

    def journal(self, *matches, since=None, unit=UNIT):
        args = ["journalctl", "--no-pager", "-o", "json"] + (["-u", unit] if unit else [])
        out = []
        for line in self.ns.run(args + list(matches), check=False).stdout.splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if since is None or int(e.get("__REALTIME_TIMESTAMP", "0")) >= since:
                out.append(e)
        return out

    def journal_text(self, unit=UNIT):
        return self.ns.run(["journalctl", "--no-pager", "-o", "short-precise", "-u", unit], check=False).stdout

    def teardown(self):
        try:
            if os.environ.get("KEEP_SANDBOX") and self.ns.pid is not None:
                log("kept %s" % self.outdir)
        finally:
            self.ns.kill()
            if not os.environ.get("KEEP_SANDBOX"):
                __import__("shutil").rmtree(self.outdir, ignore_errors=True)


ENV = None


class ConfigModeSystemdTest(unittest.TestCase):
    """Ordered: each test starts from the state the previous one left."""

    def setUp(self):
        self.env = ENV
        self.ns = ENV.ns

    def wait_journal(self, what, *matches, since=None, pred=None, timeout=15, unit=UNIT):
        def found():
            return [e for e in self.env.journal(*matches, since=since, unit=unit) if pred is None or pred(e)]

        try:
            return poll(found, timeout, what, interval=0.2)
        except AssertionError:
            raise AssertionError("no journal entry: %s\n--- %s:\n%s" % (what, unit, self.env.journal_text(unit)))

    def test_01_start_applies_through_the_path_unit(self):
        r = self.ns.run(["systemctl", "start", UNIT], check=False, timeout=90)
        s = self.env.show()
        self.assertEqual(r.returncode, 0, "systemctl start: %s%s\n%s" % (r.stdout, r.stderr, self.env.journal_text()))
        self.assertEqual((s["ActiveState"], s["SubState"]), ("active", "running"), s)
        self.assertEqual(s["StatusText"], "in sync: 2 accounts", "%s\n%s" % (s, self.env.journal_text()))
        self.assertEqual(self.env.reserved("APP"), (64 * MiB, 256 * MiB))
        self.assertEqual(self.env.reserved("ORDERS"), "off")
        # Who is who: the server runs as nats, the daemon as its own static user, which owns the fragments.
        server = self.env.show(SERVER_UNIT, ("MainPID",))["MainPID"]
        nats_uid = int(self.ns.run(["id", "-u", "nats"]).stdout)
        accountd_uid = int(self.ns.run(["id", "-u", "nats-accountd"]).stdout)
        self.assertEqual(self.env.uid_of(server), nats_uid)
        self.assertEqual(self.env.uid_of(s["MainPID"]), accountd_uid)
        st = os.stat(self.ns.path(FRAGMENTS + "/APP.conf"))
        self.assertEqual((st.st_uid, st.st_mode & 0o777), (accountd_uid, 0o644))
        self.assertIn("  max_mem: 67108864\n", self.env.read(FRAGMENTS + "/APP.conf"))
        self.assertIn("jetstream: disabled\n", self.env.read(FRAGMENTS + "/ORDERS.conf"))
        # The reload came from the path unit.
        self.assertTrue(self.env.journal(unit=RELOAD_SERVICE), "nats-accountd-reload.service never ran")

    def test_02_edit_is_applied_and_logged(self):
        pid = self.env.show()["MainPID"]
        since = now_usec()
        t0 = time.monotonic()
        self.env.write(ETC + "/accounts.yaml", accounts_yaml("512MiB"))
        poll(lambda: self.env.reserved("APP") == (64 * MiB, 512 * MiB), 30, "the edit applied")
        log("config mode under systemd (path unit, SIGHUP by systemd): edit applied %.0f ms after the save"
            % ((time.monotonic() - t0) * 1000))
        es = self.wait_journal("APP updated", "NATS_ACCOUNT=APP", "NATS_ACTION=update", since=since)
        self.assertEqual(es[-1].get("MESSAGE_ID"), MSGID_ACCOUNT_UPDATED)
        self.assertIn("max_store 256MiB -> 512MiB", es[-1].get("MESSAGE", ""))
        poll(lambda: self.env.show()["StatusText"].startswith("in sync"), 10, "in sync again")
        self.assertEqual(self.env.show()["MainPID"], pid)

    def test_03_signal_route_cannot_work_here_and_says_why(self):
        """reload = auto picks signal for 2.9; the server sets no pid file: a clear error, nothing lost."""
        conf = self.env.read(ETC + "/nats-accountd.conf")
        self.env.write(ETC + "/nats-accountd.conf", conf.replace("reload = external", "reload = auto"))
        since = now_usec()
        self.ns.run(["systemctl", "reload", UNIT])
        self.wait_journal("the settings reloaded", since=since,
                          pred=lambda e: re.search(r"pass \d+ finished", e.get("MESSAGE", "")) is not None)
        since = now_usec()
        self.env.write(ETC + "/accounts.yaml", accounts_yaml("384MiB"))
        es = self.wait_journal("APP failed", "NATS_ACCOUNT=APP", "MESSAGE_ID=" + MSGID_ACCOUNT_FAILED, since=since)
        self.assertIn("reload = signal needs a pid file: /etc/nats-server.conf sets no pid_file", es[-1]["MESSAGE"])
        self.assertEqual(self.env.reserved("APP"), (64 * MiB, 512 * MiB), "nothing half applied")
        # Back to the path unit: the retry applies it.
        self.env.write(ETC + "/nats-accountd.conf", conf)
        self.ns.run(["systemctl", "reload", UNIT])
        poll(lambda: self.env.reserved("APP") == (64 * MiB, 384 * MiB), 30, "applied after the fix")
        poll(lambda: self.env.show()["StatusText"].startswith("in sync"), 15, "in sync again")

    def test_04_security_exposure_at_most_2(self):
        r = self.ns.run(["systemd-analyze", "security", "--no-pager", UNIT], check=False, timeout=60)
        m = re.search(r"Overall exposure level for %s: (\d+(?:\.\d+)?)" % re.escape(UNIT), r.stdout)
        self.assertIsNotNone(m, r.stdout + r.stderr)
        log("systemd-analyze security %s with the config-mode drop-in: %s" % (UNIT, m.group(1)))
        self.assertLessEqual(float(m.group(1)), 2.0, r.stdout)

    def test_05_no_secret_in_the_journal(self):
        raw = subprocess.run(["nsenter", "-t", str(self.ns.pid), "-p", "-m", "--", "journalctl", "--no-pager",
                              "-o", "export"], stdout=subprocess.PIPE, timeout=60).stdout
        self.assertIn(b"SYSLOG_IDENTIFIER=nats-accountd", raw)
        self.assertNotIn(self.env.seed, raw)
        self.assertEqual(SEED_RE.findall(raw), [])

    def test_06_stop_ends_with_success(self):
        r = self.ns.run(["systemctl", "stop", UNIT], check=False, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        s = self.env.show()
        self.assertEqual((s["ActiveState"], s["Result"], s["ExecMainStatus"], s["NRestarts"]),
                         ("inactive", "success", "0", "0"), s)


def main():
    global ENV
    for var in ("NATS_ACCOUNTD", "NATS_PROBE"):
        if not os.environ.get(var):
            print("%s is not set" % var, file=sys.stderr)
            return 1
    if not os.access(DEBIAN_SERVER, os.X_OK) or not os.path.exists("/lib/systemd/system/" + SERVER_UNIT):
        print("SKIP: Debian's nats-server package is not installed (%s, %s)" % (DEBIAN_SERVER, SERVER_UNIT))
        return SKIP

    def make_env():
        global ENV
        ENV = Env()
        return ENV

    return run_suite(__name__, make_env, journal_units=(UNIT, SERVER_UNIT, RELOAD_SERVICE))


if __name__ == "__main__":
    sys.exit(main())
