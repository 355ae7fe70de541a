#!/usr/bin/env python3
"""System test: the Debian package's life cycle under a real systemd (stdlib only).

Before booting anything, two packages are built from a copy of the source tree
(tests/package/debbuild.py; the tree itself stays clean): the tree's version V1
and a rebuild with one more changelog entry, V2 > V1. Then systemd boots as PID
1 of a private PID and mount namespace with a root of its own (sysns.py,
own_root=True: an overlay of the machine's / whose writes stay in a tmpfs, so
dpkg's database and apt are there and nothing reaches the machine), and, in
order, as an operator would:

  1. `apt-get install ./V1.deb`: installed, the unit enabled, its start tried
     and skipped because /etc/nats-accountd/nats-accountd.conf does not exist
     (`systemctl status` says so), the journal catalog updated by the trigger;
  2. `nats-accountd init /etc/nats-accountd --port -1`, a nats-server from that
     sandbox as the transient unit test-nats (a port it picked), `systemctl
     start nats-accountd`: accounts created, in sync, journalled;
  3. `apt-get install ./V2.deb`: the service restarted (new InvocationID and
     MainPID, running the new binary), still in sync, no account re-created;
  4. `apt-get remove`: the service stopped, the binary gone, settings and seeds
     kept;
  5. `apt-get purge`: settings, seeds (/var/lib/nats-accountd and
     /var/lib/private/nats-accountd) and the enablement gone.
Afterwards the machine itself is checked: no trace of nats-accountd in its dpkg
database, /usr, /etc or /var.

Exit 77 (skip) only where booting is impossible (not root, no systemd, no
unshare/nsenter) or no nats-server is found.

Environment: SRCDIR (the source tree), PROJECT_VERSION (set by meson),
NATS_SERVER (default: nats-server on PATH), KEEP_DEB=1 keeps the build folder.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "package"))
from sysns import INSIDE_ROOT, Namespace, SetupError, log, now_usec, poll, run_suite, skip_reason  # noqa: E402
import debbuild  # noqa: E402
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from harness import state_seeds  # noqa: E402

NAME = debbuild.NAME
UNIT = "nats-accountd.service"
SERVER_UNIT = "test-nats.service"
ETC = "/etc/nats-accountd"
CONF = ETC + "/nats-accountd.conf"
STATE = "/var/lib/nats-accountd"
STATE_PRIVATE = "/var/lib/private/nats-accountd"  # where DynamicUser= puts StateDirectory=
WANTS = "/etc/systemd/system/multi-user.target.wants/" + UNIT
DEBS_IN = INSIDE_ROOT + "/debs"
MSGID_ACCOUNT_CREATED = "c6aacab116ab428aa5f3f192f7a8ef59"  # docs/nats-accountd.catalog
POLICY_RC_D = "/usr/sbin/policy-rc.d"

# What installing or using the package puts on a root.
TRACES = ("/usr/bin/nats-accountd", "/lib/systemd/system/" + UNIT,
          "/usr/lib/systemd/catalog/nats-accountd.catalog", "/var/lib/dpkg/info/%s.list" % NAME,
          ETC, STATE, STATE_PRIVATE, WANTS)


def find_server():
    server = os.environ.get("NATS_SERVER") or shutil.which("nats-server")
    if not server or not os.access(server, os.X_OK):
        return None
    return os.path.abspath(server)


def machine_traces():
    """Traces of nats-accountd on the machine itself (not in the namespace)."""
    found = [p for p in TRACES if os.path.lexists(p)]
    r = subprocess.run(["dpkg-query", "-W", "-f", "${db:Status-Status} ${Version}", NAME],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    if r.returncode == 0 and not r.stdout.startswith("not-installed"):
        found.append("dpkg: %s %s" % (NAME, r.stdout))
    return found


class Builds:
    """V1 (the tree's version) and V2 (one changelog entry more), built with nocheck:
    the meson suites already ran on this tree."""

    def __init__(self):
        self.work = debbuild.workdir()
        try:
            self.build()
        except BaseException:
            self.remove()
            raise

    def build(self):
        src = debbuild.source_root()
        self.v1 = debbuild.changelog_field(src, "Version")
        tree = debbuild.copy_tree(src, os.path.join(self.work, "%s-%s" % (NAME, debbuild.upstream_version(self.v1))))
        self.deb1 = debbuild.deb_of(debbuild.build(tree, nocheck=True))
        self.v2 = self.v1 + "+systest1"
        debbuild.add_changelog_entry(tree, self.v2, "Rebuild with a higher version for the upgrade test.")
        self.deb2 = debbuild.deb_of(debbuild.build(tree, nocheck=True))
        r = subprocess.run(["dpkg", "--compare-versions", self.v2, "gt", self.v1])
        if r.returncode != 0:
            raise SetupError("%s is not higher than %s" % (self.v2, self.v1))

    def remove(self):
        if not os.path.isdir(self.work) or getattr(self, "kept", False):
            return
        if os.environ.get("KEEP_DEB"):
            self.kept = True
            log("kept %s" % self.work)
        else:
            shutil.rmtree(self.work, ignore_errors=True)


class Env:
    """The booted namespace with a root of its own, and the sandbox in it."""

    def __init__(self, server, builds):
        self.server_src = server
        self.builds = builds
        self.outdir = tempfile.mkdtemp(prefix="nats-accountd-pkgtest.")
        self.ns = Namespace(self.outdir, own_root=True)
        self.port = None

    def setup(self):
        self.ns.boot()
        ns = self.ns
        # The namespace starts as a copy of the machine. Files of nats-accountd the
        # machine has outside dpkg (a `ninja install`, a sandbox in /etc/nats-accountd)
        # are removed in here only: the copy must hold nothing of the package.
        for p in TRACES:
            if os.path.lexists(ns.path(p)):
                ns.run(["rm", "-rf", "--one-file-system", p])
                log("removed %s in the namespace's root (the machine's stays)" % p)
        inside = [p for p in TRACES if os.path.lexists(ns.path(p))]
        if inside or self.status()[0] != "not-installed":
            raise SetupError("the namespace's root has nats-accountd before the test: %s %s" % (inside, self.status()))
        # Docker-made images carry a policy-rc.d that answers 101 ("start nothing") so
        # that `docker build` starts no services; the maintainer scripts' systemctl
        # calls go through it. A booted Debian machine has none: remove it in here.
        if self.exists(POLICY_RC_D):
            ns.run(["rm", "-f", POLICY_RC_D])
            log("removed %s in the namespace's root (the machine's stays)" % POLICY_RC_D)
        ns.mkdir(DEBS_IN)
        # apt reads a local .deb as the _apt user: readable files in a searchable folder.
        self.deb1 = ns.install(self.builds.deb1, DEBS_IN + "/" + os.path.basename(self.builds.deb1), mode=0o644)
        self.deb2 = ns.install(self.builds.deb2, DEBS_IN + "/" + os.path.basename(self.builds.deb2), mode=0o644)
        self.server = ns.install(self.server_src, INSIDE_ROOT + "/bin/nats-server")
        r = ns.run(["systemctl", "mask", "--runtime", "--now", "nats-server.service"], check=False)
        if ns.run(["systemctl", "is-active", "nats-server.service"], check=False).stdout.strip() == "active":
            raise SetupError("Debian's nats-server unit is still active: %s%s" % (r.stdout, r.stderr))

    def teardown(self):
        try:
            self.ns.kill()
        finally:
            shutil.rmtree(self.outdir, ignore_errors=True)
            self.builds.remove()  # also on meson's SIGTERM, which ends the process right after

    # inside ------------------------------------------------------------------------

    def apt(self, *args):
        t0 = time.monotonic()
        r = self.ns.run(["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-y", "-q", "--no-install-recommends"]
                        + list(args), check=False, timeout=300)
        if r.returncode != 0:
            raise AssertionError("apt-get %s exited %d:\n%s%s" % (" ".join(args), r.returncode, r.stdout, r.stderr))
        log("apt-get %s: %.1fs" % (" ".join(os.path.basename(a) for a in args), time.monotonic() - t0))
        return r

    def status(self):
        """(dpkg's status word, version) of the package inside; not-installed when unknown."""
        r = self.ns.run(["dpkg-query", "-W", "-f", "${db:Status-Status} ${Version}", NAME], check=False)
        if r.returncode != 0:
            return ("not-installed", "")
        word, _, version = r.stdout.partition(" ")
        return (word, version)

    def exists(self, inside):
        return os.path.lexists(self.ns.path(inside))

    def show(self, unit=UNIT):
        props = ["ActiveState", "SubState", "MainPID", "InvocationID", "StatusText", "ConditionResult",
                 "ConditionTimestampMonotonic", "LoadState", "UnitFileState", "NRestarts"]
        r = self.ns.run(["systemctl", "show", unit] + ["-p" + p for p in props])
        return dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)

    def plan(self):
        r = self.ns.run(["/usr/bin/nats-accountd", "-c", CONF, "plan", "--json"], check=False, timeout=30)
        if r.returncode != 0:
            raise AssertionError("plan exited %d:\n%s%s" % (r.returncode, r.stdout, r.stderr))
        return {a["name"]: a for a in json.loads(r.stdout)["accounts"]}

    def journal(self, *matches, since=None, unit=UNIT):
        return self.ns.journal(*matches, unit=unit, since=since)

    def journal_text(self, unit=UNIT):
        return self.ns.journal_text(unit)

    def catalog(self):
        return self.ns.run(["journalctl", "--list-catalog", "--no-pager"], check=False).stdout

    def start_server(self):
        """init's nats-server as the transient unit test-nats; returns the port it picked."""
        self.ns.run(["systemd-run", "--unit=" + SERVER_UNIT, self.server, "-c", ETC + "/nats-server.conf"])

        def port():
            for name in os.listdir(self.ns.path(ETC)):
                if re.fullmatch(r"nats-server_\d+\.ports", name):
                    try:
                        with open(self.ns.path(ETC + "/" + name)) as f:
                            urls = json.load(f).get("nats") or []
                    except (OSError, ValueError):
                        continue
                    if urls:
                        return urls[0]
            return None

        u = urllib.parse.urlsplit(poll(port, 15, "the ports file of nats-server"))
        if u.hostname != "127.0.0.1" or not u.port or u.port == 4222:
            raise SetupError("unexpected server URL %s" % u.geturl())
        return u.port


ENV = None


class PackageLifeCycleTest(unittest.TestCase):
    """Ordered: each test starts from the state the previous one left."""

    maxDiff = None

    def setUp(self):
        self.env = ENV
        self.ns = ENV.ns

    def assertInSync(self, keys=None):
        plan = self.env.plan()
        self.assertIn("APP", plan)
        for name, a in plan.items():
            self.assertEqual(a["action"], "unchanged", a)
            self.assertRegex(a["key"] or "", r"^A[A-Z2-7]{55}$", a)
        if keys is not None:
            self.assertEqual({n: a["key"] for n, a in plan.items()}, keys, "accounts were re-created")
        return {n: a["key"] for n, a in plan.items()}

    def test_01_fresh_install_is_enabled_and_waits_for_settings(self):
        env = self.env
        self.assertNotIn(MSGID_ACCOUNT_CREATED, env.catalog())
        env.apt("install", env.deb1)
        self.assertEqual(env.status(), ("installed", env.builds.v1))
        for p in ("/usr/bin/nats-accountd", "/lib/systemd/system/" + UNIT,
                  "/usr/lib/systemd/catalog/nats-accountd.catalog", WANTS):
            self.assertTrue(env.exists(p), p)
        s = env.show()
        self.assertEqual(s["UnitFileState"], "enabled", s)
        # The postinst started it; the condition kept it from running, quietly.
        self.assertEqual((s["ActiveState"], s["ConditionResult"]), ("inactive", "no"), s)
        self.assertNotEqual(s["ConditionTimestampMonotonic"], "0", "no start was tried: %s" % s)
        r = self.ns.run(["systemctl", "status", "--no-pager", UNIT], check=False)
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        self.assertIn("ConditionPathExists=%s was not met" % CONF, r.stdout)
        log("after a fresh install, systemctl status says:\n" +
            "\n".join(line for line in r.stdout.splitlines() if "ondition" in line or "Active:" in line))
        self.assertEqual(env.journal("-p", "warning"), [], "a fresh install logged warnings")
        # dpkg's trigger ran `journalctl --update-catalog`.
        self.assertIn(MSGID_ACCOUNT_CREATED, env.catalog())
        self.assertNotEqual(self.ns.run(["systemctl", "is-active", "nats-server.service"], check=False).stdout.strip(),
                            "active")

    def test_02_init_and_start_create_accounts(self):
        env = self.env
        self.ns.run(["/usr/bin/nats-accountd", "init", ETC, "--port", "-1"])
        env.port = env.start_server()
        with open(env.ns.path(CONF)) as f:
            conf = f.read()
        if "state_dir = %s" % STATE not in conf:
            raise AssertionError("init in %s did not pick state_dir = %s:\n%s" % (ETC, STATE, conf))
        conf = re.sub(r"(?m)^servers = .*$", "servers = nats://127.0.0.1:%d" % env.port, conf)
        with open(env.ns.path(CONF), "w") as f:
            f.write(conf)
        r = self.ns.run(["systemctl", "start", UNIT], check=False, timeout=60)
        self.assertEqual(r.returncode, 0, "systemctl start: %s%s\n%s" % (r.stdout, r.stderr, env.journal_text()))
        s = env.show()
        self.assertEqual((s["ActiveState"], s["SubState"], s["ConditionResult"]), ("active", "running", "yes"), s)
        self.assertTrue(s["StatusText"].startswith("in sync"), s)
        keys = self.assertInSync()
        es = poll(lambda: env.journal("NATS_ACCOUNT=APP", "MESSAGE_ID=" + MSGID_ACCOUNT_CREATED), 10,
                  "the journal entry of APP's creation")
        self.assertEqual(es[0].get("NATS_ACCOUNT_KEY"), keys["APP"], es[0])
        self.assertEqual(es[0].get("_SYSTEMD_UNIT"), UNIT, es[0])
        # The installed catalog explains the entry (journalctl -x).
        r = self.ns.run(["journalctl", "--no-pager", "-x", "-u", UNIT, "MESSAGE_ID=" + MSGID_ACCOUNT_CREATED])
        self.assertIn("NATS account created", r.stdout)
        # DynamicUser= + StateDirectory=: the seeds live in /var/lib/private, reached by a link.
        self.assertEqual(os.readlink(env.ns.path(STATE)), "private/nats-accountd")
        self.assertEqual(state_seeds(env.ns.path(STATE_PRIVATE)).get(keys["APP"]), "APP",
                         os.listdir(env.ns.path(STATE_PRIVATE)))
        env.keys = keys

    def test_03_upgrade_restarts_the_service_which_stays_in_sync(self):
        env = self.env
        before = env.show()
        self.assertEqual(before["ActiveState"], "active", before)
        since = now_usec()
        env.apt("install", env.deb2)
        self.assertEqual(env.status(), ("installed", env.builds.v2))
        s = env.show()
        self.assertEqual((s["ActiveState"], s["SubState"]), ("active", "running"), s)
        self.assertNotEqual(s["InvocationID"], before["InvocationID"], "not restarted: %s" % s)
        self.assertNotEqual(s["MainPID"], before["MainPID"], "not restarted: %s" % s)
        # The running daemon is the upgraded file, not the replaced one.
        exe = self.ns.run(["stat", "-L", "-c", "%i", "/proc/%s/exe" % s["MainPID"]]).stdout.strip()
        installed = self.ns.run(["stat", "-c", "%i", "/usr/bin/nats-accountd"]).stdout.strip()
        self.assertEqual(exe, installed)
        log("upgrade: MainPID %s -> %s, InvocationID %s -> %s" % (
            before["MainPID"], s["MainPID"], before["InvocationID"][:8], s["InvocationID"][:8]))
        poll(lambda: env.show()["StatusText"].startswith("in sync"), 30, "the restarted daemon in sync")
        self.assertInSync(env.keys)
        self.assertEqual(env.journal("MESSAGE_ID=" + MSGID_ACCOUNT_CREATED, since=since), [])

    def test_04_remove_stops_it_and_keeps_settings_and_seeds(self):
        env = self.env
        pid = env.show()["MainPID"]
        self.assertNotEqual(pid, "0")
        env.apt("remove", NAME)
        self.assertEqual(env.status(), ("config-files", env.builds.v2))
        self.assertFalse(env.exists("/usr/bin/nats-accountd"))
        self.assertFalse(env.exists("/proc/%s" % pid), "the daemon still runs after remove")
        self.assertEqual(env.show()["LoadState"], "not-found")
        self.assertTrue(env.exists(CONF))
        self.assertEqual(state_seeds(env.ns.path(STATE_PRIVATE)).get(env.keys["APP"]), "APP")
        self.assertTrue(os.path.islink(env.ns.path(STATE)))

    def test_05_purge_removes_settings_and_seeds(self):
        env = self.env
        self.ns.run(["systemctl", "stop", SERVER_UNIT])  # the sandbox server's files are in /etc/nats-accountd
        env.apt("purge", NAME)
        self.assertEqual(env.status()[0], "not-installed")
        left = [p for p in TRACES if env.exists(p)]
        self.assertEqual(left, [])
        self.assertFalse(env.exists("/var/lib/systemd/deb-systemd-helper-enabled/%s.dsh-also" % UNIT))


def main():
    global ENV
    why = skip_reason()
    if why:
        print("SKIP: %s" % why)
        return 77
    server = find_server()
    if not server:
        print("SKIP: nats-server not found (set NATS_SERVER or put it on PATH)")
        return 77
    missing = debbuild.missing_tools()
    if missing:
        print("missing %s: run tools/install-deps.sh" % ", ".join(missing), file=sys.stderr)
        return 1
    traces_before = machine_traces()
    installed = [t for t in traces_before if t.startswith("dpkg:")]
    if installed:
        print("this machine has the nats-accountd package installed (%s): the test installs, upgrades and purges it "
              "in a copy of this machine's root and needs that copy without it" % ", ".join(installed), file=sys.stderr)
        return 1

    policy_rc_d = os.path.lexists(POLICY_RC_D)  # removed inside the namespace only

    def interrupted(signo, frame):
        raise SystemExit(128 + signo)

    signal.signal(signal.SIGTERM, interrupted)
    builds = None
    try:
        try:
            builds = Builds()
        except (debbuild.BuildError, SetupError) as e:
            print(e, file=sys.stderr)
            return 1
        log("built %s and %s" % (os.path.basename(builds.deb1), os.path.basename(builds.deb2)))

        def make_env():
            global ENV
            ENV = Env(server, builds)
            return ENV

        rc = run_suite(__name__, make_env, journal_units=(UNIT, SERVER_UNIT))
    finally:
        if builds is not None:
            builds.remove()
    traces = [t for t in machine_traces() if t not in traces_before]
    if os.path.lexists(POLICY_RC_D) != policy_rc_d:
        traces.append("%s %s" % (POLICY_RC_D, "appeared" if not policy_rc_d else "was removed"))
    if traces:
        print("FAIL: the test left traces on the machine: %s" % ", ".join(traces), file=sys.stderr)
        return 1
    log("the machine has no new trace of %s%s" % (NAME, " (it had %s before)" % ", ".join(traces_before)
                                                      if traces_before else ""))
    return rc


if __name__ == "__main__":
    sys.exit(main())
