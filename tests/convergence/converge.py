#!/usr/bin/env python3
"""Convergence under faults: a random, reproducible schedule of edits and faults
against real nats-servers and `nats-accountd run`, with the servers checked
from outside after every quiet period (stdlib only).

    converge.py --seed 7 --steps 40 --topology cluster      one schedule
    converge.py --minutes 60 --seed 1                        a soak: schedules back to back
    converge.py --replay schedule.json                       one saved schedule again

A schedule (model.generate) is a list of steps: edits of the accounts file
(atomic rename, in-place write, truncate-then-write, symlink swap, ConfigMap
swap; valid or with one error), the file deleted and restored, SIGHUP,
`systemctl reload`/`restart`, the daemon SIGKILLed mid-pass, SIGSTOPped or
restarted, servers SIGKILLed, SIGSTOPped (longer than request_timeout, or
than WatchdogSec) or a cluster node down for a while, another tool pushing an
export or a limit into an account's JWT, pauses; and checks. A check ends the
faults still open, waits for the servers to settle and verifies, through the
servers and never through the daemon's own view:

  applied     every managed account on every server: the JWT's claims and what
              a user of the account sees in $JS.API.INFO and the server's
              ACCOUNT.INFO equal the last valid file (nats-accountd.accounts(5));
  one-key     no managed name has two accounts (keys) on any server;
  unmanaged   exports another tool added survive (unless it raced a pass);
              accounts not listed keep their JWT; the system account too;
  iat         every JWT the daemon pushed has an iat above the one it replaced;
  daemon      alive, never restarted or killed but by the driver (systemd:
              NRestarts, MainPID, no watchdog), and reporting "in sync";
  journal     a line per applied change (action and account), no secret;
  files       each file the driver wrote is valid or not as it meant it to be
              (`nats-accountd check`), so expectations rest on the right file.

A failure prints the seed and the schedule, then shrinks it (drops steps while
the same invariant still fails) and prints the shortest schedule found and the
command that replays it. Exit status: 0 all held, 1 a violation, 2 the
environment broke (a port taken, a server that would not start), 77 no server.

Environment: NATS_ACCOUNTD, NATS_PROBE (set by meson), NATS_SERVER (default:
nats-server on PATH), NATS_ACCOUNTD_UNIT for the systemd runner, KEEP_SANDBOX=1.
"""

import argparse
import glob
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(TESTS, "integration"))
sys.path.insert(0, os.path.join(TESTS, "system"))
import harness  # noqa: E402
import model  # noqa: E402
from harness import HarnessError, jwt_claims  # noqa: E402
from test_daemon import Daemon  # noqa: E402

REQUEST_TIMEOUT = 2.0
RESYNC_SEC = 10
WATCHDOG_SEC = 5
# How long a check waits for the servers to settle: past the daemon's longest
# retry backoff (60 s) and a resync.
SETTLE_SEC = 100
# A valid file that stood this long while the daemon ran has been read: a
# later broken save keeps it in force (an earlier one may have been coalesced away).
STABLE_SEC = 5.0
# A pass that started this long before another tool's push may have read the
# JWT from before it (times are when the driver saw the lines).
RACE_SLACK = 0.5
SEED_RE = re.compile(r"(?<![A-Z2-7])S[OAUNC][A-Z2-7]{56}(?![A-Z2-7])")
ACTION_RE = re.compile(r"^(?:\w+: )?(?P<name>[A-Za-z0-9_-]+)(?: (?P<verb>created|enabled|updated|disabled)\b|"
                       r": (?:create|enable|update|disable) sent, not confirmed before the stop\b)")
PASS_STARTED_RE = re.compile(r"pass (\d+) started")
# What a check may meet while a cluster settles (a JetStream meta leader being
# elected, a server still starting): wait, do not call it final.
# A server just restarted may answer "JetStream not enabled for account" for a
# while (its JetStream recovering the account): what it runs can still change
# without the daemon, so no early end; the settle time still bounds it.
TRANSIENT_RE = re.compile(r"as a user failed|no ACCOUNT.INFO reply|ACCOUNT.INFO error|VARZ:|got unavailable: |"
                          r"\$JS\.API\.INFO: want .*, got disabled")


def parse_time(text):
    """Seconds since the epoch of an RFC 3339 time as nats-server writes it (nanoseconds), or None."""
    import datetime
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", text or "")
    if not m:
        return None
    frac = (m.group(2) or "0")[:6].ljust(6, "0")
    tz = "+00:00" if m.group(3) == "Z" else m.group(3)
    return datetime.datetime.fromisoformat("%s.%s%s" % (m.group(1), frac, tz)).timestamp()


# A config-mode fragment's jetstream {} names (nats-server's) -> the accounts file's.
FRAGMENT_JS = {"max_mem": "max_memory", "max_file": "max_store", "max_streams": "max_streams",
               "max_consumers": "max_consumers", "max_ack_pending": "max_ack_pending",
               "mem_max_stream_bytes": "memory_max_stream_bytes", "disk_max_stream_bytes": "store_max_stream_bytes",
               "max_bytes_required": "max_bytes_required"}


def fragment_js(text):
    """What a fragment tells the servers of JetStream, in expected_claims()'s shape (None: nothing)."""
    if re.search(r"(?m)^jetstream: disabled$", text):
        return "disabled"
    m = re.search(r"(?m)^jetstream \{\n(.*?)^\}", text, re.S)
    if not m:
        return None
    flat = {f: -1 for f in model.JS_FIELDS}
    flat["max_bytes_required"] = False
    for k, v in re.findall(r"(\w+): (\S+)", m.group(1)):
        f = FRAGMENT_JS.get(k)
        if f == "max_bytes_required":
            flat[f] = v == "true"
        elif f:
            n = int(v)
            flat[f] = -1 if n <= 0 and f not in ("max_memory", "max_store") else n
    return {"flat": flat}


def fragment_limits(text):
    """A fragment's limits {} as {field: int} ({} when it has none)."""
    m = re.search(r"(?m)^limits \{\n(.*?)^\}", text, re.S)
    return {k: int(v) for k, v in re.findall(r"(\w+): (-?\d+)", m.group(1))} if m else {}


def log(msg):
    sys.stderr.write("%s %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


class Violation(Exception):
    def __init__(self, kind, detail):
        super().__init__("%s: %s" % (kind, detail))
        self.kind = kind
        self.detail = detail


class EnvironmentBroken(Exception):
    """Not the daemon's fault: the machine (a port taken, a server that will not start)."""


# ---- servers ------------------------------------------------------------------------------

class Node:
    def __init__(self, name, conf, ports_dir, jwt_dir, log_path):
        self.name = name
        self.conf = conf
        self.ports_dir = ports_dir
        self.jwt_dir = jwt_dir
        self.log_path = log_path
        self.srv = None
        self.state = "up"
        self.since = 0.0  # when it was stopped or taken down
        self.hold = 0.0  # for how long at least

    @property
    def url(self):
        return self.srv.url


class Servers:
    """A standalone server or a 3-node cluster from harness, each node restartable on its ports."""

    def __init__(self, topology, mode="operator"):
        self.topology = topology
        self.mode = mode
        if mode == "config":
            import confmode
            self.sb = confmode.ConfigCluster() if topology == "cluster" else confmode.ConfigSandbox("converge-config")
            self._add_config_accounts()
        else:
            self.sb = harness.Cluster() if topology == "cluster" else harness.Sandbox("converge")
        if topology == "cluster":
            self.sb.start_cluster()
            self.nodes = []
            for i, srv in enumerate(self.sb.servers, start=1):
                node = self.sb.path("c%d" % i)
                n = Node("c%d" % i, srv.conf, node, os.path.join(node, "jwt"), srv.log_path)
                n.srv = srv
                self.nodes.append(n)
        else:
            srv = self.sb.start_server()
            n = Node(None, srv.conf, self.sb.dir, self.sb.path("jwt"), srv.log_path)
            n.srv = srv
            self.nodes = [n]
        for n in self.nodes:
            n.next = n.srv.again()  # restarts come back on the same ports: the daemon's settings name them
        self.names = {}
        for reply in self.sb.gather_json("$SYS.REQ.SERVER.PING", len(self.nodes)):
            self.names[reply["server"]["name"]] = reply["server"]["id"]
        if self.nodes[0].name is None:
            self.nodes[0].name = next(iter(self.names))
        self.recorders = []
        self.tails = []
        for i, n in enumerate(self.nodes if mode == "operator" else []):
            path = self.sb.pushed if i == 0 else os.path.join(self.sb.root, "pushed-%s.jwts" % n.name)
            if i > 0:
                self.recorders.append(harness.Recorder(self.sb.t["probe"], self.sb.sys_creds, n.url, path))
            self.tails.append(RecordTail(path))

    def _add_config_accounts(self):
        """Config mode: the accounts of model.POOL that init did not write, each in the servers'
        config with a user (an nkey, as init's) and the include of its fragment."""
        sb = self.sb
        blocks = []
        for name in model.POOL:
            if "\n  %s {" % name in sb.read("nats-server.conf"):
                continue
            seed = sb.path("%s-user.nk" % name)
            r = sb.probe("gen-seed", "user")
            fd = os.open(seed, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(r.stdout)
            pub = sb.probe("pubkey-of-seed", seed).stdout.strip()
            sb.write(os.path.join("accounts.d", "%s.conf" % name), "# not written by nats-accountd yet\n")
            blocks.append('  %s {\n    users = [ { nkey: %s } ]\n    include "accounts.d/%s.conf"\n  }\n' % (
                name, pub, name))

        def add(text, prefix=""):
            at = text.index("}\nsystem_account:")
            return text[:at] + "".join(b.replace('include "accounts.d/', 'include "%saccounts.d/' % prefix)
                                       for b in blocks) + text[at:]

        sb.write("nats-server.conf", add(sb.read("nats-server.conf")))
        if hasattr(sb, "node_confs"):
            sb.node_confs = [(node, add(text, "../")) for node, text in sb.node_confs]

    def up(self):
        return [n for n in self.nodes if n.state == "up"]

    def kill(self, i, sig):
        n = self.nodes[i]
        if n.state == "down":
            return
        os.kill(n.srv.proc.pid, signal.SIGKILL if sig == "KILL" else signal.SIGTERM)
        if n.state == "stopped" and sig != "KILL":
            os.kill(n.srv.proc.pid, signal.SIGCONT)
        try:
            n.srv.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(n.srv.proc.pid, signal.SIGKILL)
            n.srv.proc.wait(timeout=5)
        n.srv._log.close()
        n.state = "down"
        n.since = time.monotonic()

    def start(self, i):
        n = self.nodes[i]
        if n.state != "down":
            return
        old_url = n.srv.url
        srv = n.next
        try:
            srv.start(timeout=30)
        except HarnessError as e:
            raise EnvironmentBroken("%s would not start again on its port: %s" % (n.name, e))
        if srv.url != old_url:
            raise EnvironmentBroken("%s came back on %s, not %s" % (n.name, srv.url, old_url))
        self.sb.servers[self.sb.servers.index(n.srv)] = srv
        n.srv = srv
        n.next = srv.again()
        n.state = "up"

    def stop(self, i):
        n = self.nodes[i]
        if n.state == "up":
            harness.sigstop(n.srv.proc.pid)
            n.state = "stopped"
            n.since = time.monotonic()

    def cont(self, i):
        n = self.nodes[i]
        if n.state == "stopped":
            os.kill(n.srv.proc.pid, signal.SIGCONT)
            n.state = "up"

    def wait_hold(self, i):
        n = self.nodes[i]
        left = n.since + n.hold - time.monotonic()
        if left > 0:
            time.sleep(left)

    def heal(self):
        """Every node up again (each after its hold), and answering."""
        healed = False
        for i, n in enumerate(self.nodes):
            if n.state != "up":
                self.wait_hold(i)
                healed = True
            if n.state == "stopped":
                self.cont(i)
            elif n.state == "down":
                self.start(i)
        if healed:
            try:
                self.sb.wait_system_api(len(self.nodes), timeout=60)
            except HarnessError as e:
                raise EnvironmentBroken("servers did not answer after they came back: %s" % e)
        return healed

    def stored(self, n):
        """{key: jwt} of a node's resolver folder (the full resolver's store)."""
        out = {}
        for p in glob.glob(os.path.join(n.jwt_dir, "*.jwt")):
            # The server truncates a JWT file before it writes it: a file read
            # in between is read again.
            for attempt in range(20):
                try:
                    with open(p) as f:
                        text = f.read().strip()
                except OSError:
                    break
                if text.count(".") == 2 or attempt == 19:
                    out[os.path.basename(p)[:-4]] = text
                    break
                time.sleep(0.01)
        return out

    def cleanup(self, foreign=()):
        for n in self.nodes:
            if n.state == "stopped":
                self.cont(self.nodes.index(n))
        for r in self.recorders:
            try:
                r.stop()
            except HarnessError:
                r.proc.kill()
        for t in self.tails:
            t.stop()
        # jwtcheck reads sb.pushed: every node's recording goes there, but
        # not what the driver pushed as another tool.
        seen = set()
        with open(self.sb.pushed + ".all", "w") as out:
            for t in self.tails:
                for _, jwt in t.snapshot():
                    if jwt not in foreign and jwt not in seen:
                        seen.add(jwt)
                        out.write(jwt + "\n")
        os.replace(self.sb.pushed + ".all", self.sb.pushed)
        self.sb.cleanup()


class RecordTail:
    """The JWTs a `nats-probe record` writes, each with the time the driver saw it."""

    def __init__(self, path):
        self.path = path
        self.items = []  # (monotonic time, jwt)
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        pos = 0
        buf = ""
        while not self.done.is_set():
            try:
                with open(self.path) as f:
                    f.seek(pos)
                    chunk = f.read()
                    pos = f.tell()
            except OSError:
                chunk = ""
            if chunk:
                t = time.monotonic()
                buf += chunk
                *lines, buf = buf.split("\n")
                with self.lock:
                    self.items += [(t, l.strip()) for l in lines if l.strip()]
            self.done.wait(0.05)

    def snapshot(self):
        with self.lock:
            return list(self.items)

    def stop(self):
        self.done.set()
        self.thread.join(timeout=2)


# ---- the daemon -------------------------------------------------------------------------

class PlainRunner:
    """`nats-accountd run` as a child process, its stderr kept line by line; the
    driver plays supervisor as the unit does (Restart=on-failure, not for exit
    65/66: a daemon started on a broken or missing file refuses to start, as
    documented, and the driver, as the operator, starts it after the next good save)."""

    kind = "plain"

    def __init__(self, servers, history):
        self.servers = servers
        self.sb = servers.sb
        self.conf = self.sb.conf
        self.history = history
        self.instances = []
        self.expected_exits = {}  # pid -> why the driver ended it
        self.stopped = False
        self.down = None  # why no daemon runs: "file" (refused to start on a bad file)
        self.kills = []  # times of SIGKILLs
        self.starts = {}  # pid -> start time

    def state_dir(self):
        return self.sb.path("state")

    @property
    def accounts_dir(self):
        return self.sb.dir

    def start(self, wait_first_pass=True):
        d = Daemon(self.sb.t["accountd"], self.conf)
        self.instances.append(d)
        self.starts[d.pid] = time.monotonic()
        self.down = None
        if wait_first_pass:
            try:
                d.wait_line(r"^debug: pass 1 finished", 0, timeout=60)
            except HarnessError as e:
                raise Violation("daemon", "did not finish its first pass: %s" % e)

    @property
    def current(self):
        return self.instances[-1]

    def running(self):
        return self.current.running()

    def lines(self, since=0.0):
        out = []
        for d in self.instances:
            with d.cond:
                out += [(t, l) for t, l in d.lines if t >= since]
        return out

    def log_text(self):
        return "\n".join(l for _, l in self.lines())

    def ready(self):
        """As systemd sends a reload only to a started unit: wait until the loop
        runs (its first line); False when it exited instead."""
        d = self.current
        try:
            d.wait_line(r"^nats-accountd \S+: \d+ accounts from ", 0, timeout=30)
        except HarnessError:
            self.poll()
            return False
        return True

    def sighup(self):
        if self.down:
            return False
        self.cont()
        if not self.ready():
            return False
        self.current.signal(signal.SIGHUP)
        return True

    reload = sighup

    def restart(self):
        if self.down:
            return False
        self.cont()
        d = self.current
        t0 = time.monotonic()
        self.expected_exits[d.pid] = "SIGTERM"
        try:
            rc = d.stop(timeout=15)
        except HarnessError as e:
            raise Violation("daemon", "restart: %s" % e)
        # As systemd counts it, a death by the SIGTERM itself is a clean stop; 65/66
        # is the daemon refusing a bad or missing file it started on just before.
        if rc not in (0, -signal.SIGTERM) and not self.refused_file(d, rc):
            raise Violation("daemon", "exited %s on SIGTERM:\n%s" % (rc, d.text()[-3000:]))
        self.history.unable.append([t0, time.monotonic() + 1])
        self.start(wait_first_pass=False)
        self.poll()
        return True

    def kill_mid_pass(self, delay_ms, since):
        """SIGKILL once a pass has started (or after 1 s), delay_ms after it; then start anew."""
        if self.down:
            return False
        d = self.current
        try:
            d.wait_line(PASS_STARTED_RE.pattern, self._index_since(d, since), timeout=1.0)
        except HarnessError:
            pass
        time.sleep(delay_ms / 1000.0)
        self.expected_exits[d.pid] = "SIGKILL"
        t = time.monotonic()
        self.kills.append(t)
        if self.stopped:
            self.history.unable[-1][1] = t
        d.proc.kill()
        d.proc.wait(timeout=10)
        self.stopped = False
        self.history.unable.append([t, time.monotonic() + 1])
        self.start(wait_first_pass=False)
        return True

    def _index_since(self, d, t):
        with d.cond:
            for i, (tl, _) in enumerate(d.lines):
                if tl >= t:
                    return i
            return len(d.lines)

    def stop(self):
        if self.down or self.stopped or not self.current.running():
            return False
        harness.sigstop(self.current.pid)
        self.stopped = True
        self.history.unable.append([time.monotonic(), None])
        return True

    def cont(self):
        if self.stopped:
            self.current.signal(signal.SIGCONT)
            self.stopped = False
            self.history.unable[-1][1] = time.monotonic()

    def heal(self):
        self.cont()

    def poll(self):
        """Notice a daemon that ended: by the driver's hand, refusing a bad file (documented), or a violation."""
        for d in self.instances:
            rc = d.proc.poll()
            if rc is None or d.pid in self.expected_exits:
                continue
            if d is self.current and self.refused_file(d, rc):
                self.expected_exits[d.pid] = "refused a %s file at start" % ("missing" if rc == 66 else "bad")
                self.down = "file"
                self.history.unable.append([time.monotonic(), None])
                continue
            raise Violation("daemon", "exited by itself with %s:\n%s" % (rc, d.text()[-3000:]))

    def refused_file(self, d, rc):
        """Exit 65/66 of a daemon that met a bad (missing) file at its start: documented."""
        if rc not in (65, 66):
            return False
        seen = self.history.on_disk_during(self.starts[d.pid], time.monotonic())
        if rc == 66:
            return any(v[1] is None for v in seen)
        return any(v[1] is not None and not v[2] for v in seen)

    def revive(self):
        """The operator's part after a good save: start the daemon that refused a bad file."""
        self.poll()
        if self.down == "file":
            self.history.unable[-1][1] = time.monotonic()
            self.start(wait_first_pass=False)
            return True
        return False

    def settle(self, timeout=60):
        """Until the running daemon has read its file: its first pass began, or it exited."""
        d = self.current
        try:
            d.wait_line(PASS_STARTED_RE.pattern, 0, timeout=timeout)
        except HarnessError:
            pass
        self.poll()

    def idle(self):
        """No pass of the running daemon is under way."""
        d = self.current
        with d.cond:
            for _, l in reversed(d.lines):
                if " finished in " in l and l.startswith("debug: pass "):
                    return True
                if PASS_STARTED_RE.search(l):
                    return False
        return True

    def started(self):
        """When the running daemon started; None when none runs (it refused a bad file)."""
        return None if self.down else self.starts[self.current.pid]

    def status(self):
        """What the daemon last said it is doing (its STATUS=)."""
        st = [l for _, l in self.lines() if l.startswith("debug: status: ")]
        return st[-1][len("debug: status: "):] if st else None

    def pass_starts(self):
        return [t for t, l in self.lines() if PASS_STARTED_RE.search(l)]

    def full_pass_since(self, t):
        """A whole pass (a sweep) that began after t has ended."""
        began = False
        for _, l in self.lines(t):
            if PASS_STARTED_RE.search(l):
                began = began or "(full)" in l
            elif began and re.search(r"pass \d+ finished in ", l):
                return True
        return False

    def user_creds(self, name):
        return self.sb.user_creds(name)

    def secrets_text(self):
        return self.log_text()

    def cleanup(self):
        for d in self.instances:
            if d.proc.poll() is None:
                d.proc.send_signal(signal.SIGCONT)
            d.kill()
        if os.environ.get("KEEP_SANDBOX"):
            with open(os.path.join(self.sb.root, "daemon.log"), "w") as f:
                f.write(self.log_text())


class SystemdRunner(PlainRunner):
    """nats-accountd.service under a real systemd (PID 1 of a private namespace,
    tests/system/sysns.py; one at a time on the machine, by its lock), talking
    to the driver's servers on the machine's loopback. The unit is the built
    one with the test drop-in of tests/system/test_systemd.py (WatchdogSec=5s)
    and RestartSec=1s; systemd is the supervisor, the driver reads what it
    says (NRestarts, MainPID, Result, StatusText) and the journal."""

    kind = "systemd"
    ETC = "/etc/nats-accountd"
    UNIT = "nats-accountd.service"

    def __init__(self, servers, history):
        super().__init__(servers, history)
        import sysns
        import test_systemd
        self.sysns = sysns
        self.lock = sysns.exclusive()
        self.lock.__enter__()
        self.env = test_systemd.Env(self.sb.t["server"])
        self.ns = self.env.ns
        self.entries = []  # journal entries of the unit: (monotonic s, MESSAGE)
        self.cursor = None
        self.expected_restarts = 0
        self.main_pid = None
        try:
            self._setup()
        except BaseException:
            self.cleanup()
            raise

    def _setup(self):
        ns = self.ns
        ns.boot()
        inside = self.sysns.INSIDE_ROOT
        self.env.binary = ns.install(self.sb.t["accountd"], inside + "/bin/nats-accountd")
        ns.mkdir(inside + "/etc")
        ns.mkdir(self.ETC)
        ns.run(["mount", "--bind", inside + "/etc", self.ETC])
        self.env.etc = ns.path(self.ETC)
        for name in ("sys.creds", "operator-signer.nk"):
            shutil.copyfile(self.sb.path(name), os.path.join(self.env.etc, name))
            os.chmod(os.path.join(self.env.etc, name), 0o600)
        conf = self.sb.read("nats-accountd.conf")
        conf = re.sub(r"(?m)^state_dir = .*$", "state_dir = /var/lib/nats-accountd", conf)
        self.env.write("nats-accountd.conf", conf)
        # What `plan`-free tools inside need (user-creds reads the state the unit writes).
        tool = conf.replace("credentials = sys.creds", "credentials = %s/sys.creds" % self.ETC).replace(
            "signing_key = operator-signer.nk", "signing_key = %s/operator-signer.nk" % self.ETC)
        self.env.write("tool.conf", tool)
        self.env.install_unit()
        dropin = ns.path("/run/systemd/system/%s.d/60-converge.conf" % self.UNIT)
        with open(dropin, "w") as f:
            # The shipped RestartSec=5s keeps restarts alone under systemd's start
            # limit (5 starts in 10 s): a fifth of it, with a fifth of the interval.
            f.write("[Unit]\nStartLimitIntervalSec=2s\n[Service]\nRestartSec=1s\n")
        ns.run(["systemctl", "daemon-reload"])

    @property
    def accounts_dir(self):
        return self.env.etc

    def state_dir(self):
        return self.ns.path("/var/lib/private/nats-accountd")

    def show(self):
        return self.env.show()

    def start(self, wait_first_pass=True):
        self.ns.run(["systemctl", "reset-failed", self.UNIT], check=False)
        r = self.ns.run(["systemctl", "start"] + ([] if wait_first_pass else ["--no-block"]) + [self.UNIT],
                        check=False, timeout=90)
        self.down = None
        self.starts_at = time.monotonic()
        self.expected_restarts = 0  # reset-failed and a start by hand set NRestarts back to 0
        if wait_first_pass and r.returncode != 0:
            raise Violation("daemon", "systemctl start: %s%s\n%s" % (r.stdout, r.stderr, self.env.journal_text()[-3000:]))
        self.main_pid = None

    @property
    def current(self):
        raise AttributeError("no child process under systemd")

    def running(self):
        s = self.show()
        return s["ActiveState"] in ("active", "reloading", "activating")

    def _read_journal(self):
        args = ["journalctl", "--no-pager", "-o", "json", "-u", self.UNIT]
        if self.cursor:
            args += ["--after-cursor", self.cursor]
        r = self.ns.run(args, check=False, timeout=60)
        for line in r.stdout.splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue
            self.cursor = e.get("__CURSOR", self.cursor)
            if e.get("_PID") and e.get("SYSLOG_IDENTIFIER") == "systemd":
                continue
            msg = e.get("MESSAGE")
            if isinstance(msg, list):  # not text
                continue
            t = int(e.get("__MONOTONIC_TIMESTAMP", "0")) / 1e6
            self.entries.append((t, msg or "", e))

    def lines(self, since=0.0):
        self._read_journal()
        return [(t, m) for t, m, e in self.entries if t >= since and e.get("SYSLOG_IDENTIFIER") == "nats-accountd"]

    def sighup(self):
        if self.down or not self.ready():
            return False
        return self.ns.run(["systemctl", "kill", "--signal=SIGHUP", self.UNIT], check=False).returncode == 0

    def reload(self):
        if self.down or not self.ready():
            return False
        r = self.ns.run(["systemctl", "reload", self.UNIT], check=False, timeout=90)
        if r.returncode != 0:
            # The daemon systemd started again after a kill may have refused the
            # file (missing, or broken) at that moment: documented, not applicable.
            self.poll()
            if self.down:
                return False
            raise Violation("daemon", "systemctl reload: %s%s" % (r.stdout, r.stderr))
        return True

    def restart(self):
        if self.down:
            return False
        t0 = time.monotonic()
        r = self.ns.run(["systemctl", "restart", self.UNIT], check=False, timeout=90)
        self.history.unable.append([t0, time.monotonic() + 1])
        self.main_pid = None
        # A restart asked for by hand sets systemd's restart counter back to 0
        # (NRestarts counts the restarts of Restart= since the last such start).
        self.expected_restarts = 0
        if r.returncode != 0:
            self.poll()
            if not self.down:
                raise Violation("daemon", "systemctl restart: %s%s" % (r.stdout, r.stderr))
        return True

    def kill_mid_pass(self, delay_ms, since):
        if self.down:
            return False
        time.sleep(delay_ms / 1000.0)
        t = time.monotonic()
        self.kills.append(t)
        self.expected_restarts += 1
        old = self.show().get("MainPID")
        self.ns.run(["systemctl", "kill", "--signal=SIGKILL", self.UNIT])
        self.main_pid = None
        # systemd starts it again after RestartSec=1s (Restart=on-failure).
        deadline = time.monotonic() + 30
        while True:
            s = self.show()
            if int(s.get("NRestarts", "0")) >= self.expected_restarts and s.get("MainPID") not in ("0", old):
                break
            if s["ActiveState"] == "failed" or time.monotonic() > deadline:
                break  # poll() tells why
            time.sleep(0.1)
        self.starts_at = time.monotonic()
        self.history.unable.append([t, time.monotonic()])
        self.poll()
        return True

    def stop(self):
        return False  # SIGSTOP longer than WatchdogSec is a watchdog kill, by design

    def cont(self):
        pass

    def poll(self):
        s = self.show()
        if s.get("Result") == "watchdog":
            raise Violation("daemon", "killed by the watchdog: %s\n%s" % (s, self.env.journal_text()[-3000:]))
        if int(s.get("NRestarts", "0")) != self.expected_restarts:
            raise Violation("daemon", "systemd restarted it %s times, the driver killed it %d times: %s\n%s" % (
                s.get("NRestarts"), self.expected_restarts, s, self.env.journal_text()[-3000:]))
        if s["ActiveState"] in ("failed", "inactive"):
            rc = int(s.get("ExecMainStatus", "0"))
            if rc in (65, 66) and not self.down:
                seen = self.history.on_disk_during(self.starts_at, time.monotonic())
                bad = [v for v in seen if (v[1] is None if rc == 66 else (v[1] is not None and not v[2]))]
                if bad:
                    self.down = "file"
                    self.history.unable.append([time.monotonic(), None])
                    return
            if not self.down:
                raise Violation("daemon", "the unit failed: %s\n%s" % (s, self.env.journal_text()[-3000:]))
            return
        if s["ActiveState"] == "active" and s.get("MainPID") not in (None, "0"):
            if self.main_pid is None:
                self.main_pid = s["MainPID"]
            elif s["MainPID"] != self.main_pid:
                raise Violation("daemon", "MainPID changed from %s to %s without the driver: %s" % (
                    self.main_pid, s["MainPID"], s))

    def ready(self):
        """A signal only to the daemon itself: between systemd's fork and the exec
        the main process is systemd's "(accountd)" child, which a SIGHUP ends (the
        unit then fails with result 'protocol'), as it would any operator's; False
        when the unit stopped instead."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            s = self.show()
            if s["ActiveState"] not in ("active", "reloading", "activating"):
                self.poll()
                return False
            pid = s.get("MainPID", "0")
            if pid != "0":
                r = self.ns.run(["cat", "/proc/%s/comm" % pid], check=False)
                if r.returncode == 0 and r.stdout.strip() == "nats-accountd":
                    return True
            time.sleep(0.05)
        return False

    def settle(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll()
            if self.down:
                return
            s = self.show()
            if s["ActiveState"] == "active":
                return
            time.sleep(0.2)
        raise Violation("daemon", "the unit did not come back within %ds: %s" % (timeout, self.show()))

    def status(self):
        return self.show().get("StatusText") or None

    def idle(self):
        for _, m in reversed(self.lines()):
            if m.startswith("pass ") and " finished in " in m:
                return True
            if PASS_STARTED_RE.search(m):
                return False
        return True

    def started(self):
        return None if self.down else self.starts_at

    def user_creds(self, name):
        r = self.ns.run([self.env.binary, "-c", self.ETC + "/tool.conf", "user-creds", name, "tester"], check=False)
        if r.returncode != 0:
            raise HarnessError("user-creds %s: %s" % (name, r.stderr))
        path = self.sb.write("%s-tester.creds" % name, r.stdout, 0o600)
        self.sb.creds_written.append(path)
        return path

    def secrets_text(self):
        r = subprocess.run(["nsenter", "-t", str(self.ns.pid), "-p", "-m", "--", "journalctl", "--no-pager",
                            "-o", "export"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        return r.stdout.decode(errors="replace")

    def cleanup(self):
        try:
            if os.environ.get("KEEP_SANDBOX") and self.ns.pid is not None:
                with open(os.path.join(self.sb.root, "journal.txt"), "w") as f:
                    f.write(self.env.journal_text())
            self.env.teardown()
        finally:
            self.lock.__exit__(None, None, None)


# ---- the accounts file ---------------------------------------------------------------------

class AccountsFile:
    """Writes the accounts file the ways operators and their tools do."""

    def __init__(self, folder, name="accounts.yaml"):
        self.folder = folder
        self.name = name
        self.path = os.path.join(folder, name)
        self.version = 0

    def _tmp(self):
        self.version += 1
        return os.path.join(self.folder, ".%s.tmp-%d" % (self.name, self.version))

    def write(self, method, text, partial=None):
        """partial(): called when a reader could see something else than the old
        or the new text (an empty file, the new text followed by the old one's end)."""
        data = text.encode()
        partial = partial or (lambda: None)
        if method == "rename":
            tmp = self._tmp()
            with open(tmp, "wb") as f:
                f.write(data)
            os.rename(tmp, self.path)
        elif method == "inplace":
            # Overwrite without truncating first, then cut the tail: a reader in
            # between sees the new text followed by the end of the old one.
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
            partial()
            try:
                os.write(fd, data)
                os.ftruncate(fd, len(data))
            finally:
                os.close(fd)
        elif method == "truncate":
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            partial()
            try:
                time.sleep(0.02)  # an empty file for a moment
                os.write(fd, data)
            finally:
                os.close(fd)
        elif method == "symlink":
            # accounts.yaml -> data/vN.yaml, the link replaced by a rename.
            self.version += 1
            data_dir = os.path.join(self.folder, "data")
            os.makedirs(data_dir, exist_ok=True)
            target = os.path.join("data", "v%d.yaml" % self.version)
            with open(os.path.join(self.folder, target), "wb") as f:
                f.write(data)
            link = self._tmp()
            os.symlink(target, link)
            os.rename(link, self.path)
        elif method == "configmap":
            # What a Kubernetes ConfigMap volume does: accounts.yaml -> ..data/accounts.yaml,
            # ..data -> ..vN, and an update swaps ..data.
            self.version += 1
            vdir = "..v%d" % self.version
            os.makedirs(os.path.join(self.folder, vdir))
            with open(os.path.join(self.folder, vdir, self.name), "wb") as f:
                f.write(data)
            link = self._tmp()
            os.symlink(vdir, link)
            os.rename(link, os.path.join(self.folder, "..data"))
            want = os.path.join("..data", self.name)
            if not (os.path.islink(self.path) and os.readlink(self.path) == want):
                link = self._tmp()
                os.symlink(want, link)
                os.rename(link, self.path)
        else:
            raise ValueError(method)

    def delete(self):
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class PerNode(dict):
    """Acceptable contents that differ by node: {node name: {account: declaration}},
    each node's store as one of the versions per account. What a node runs and the
    JWT it has loaded may each be another of those versions (alternatives): a
    server that took a push as it started ran its JetStream limits while its store
    and loaded JWT stayed the older version (seen on 2.11.17), and with no daemon
    running nothing levels them. In config mode the fragments are one folder for all
    nodes (each account as one of the versions), and what each node runs is what it
    read at its last start or reload."""

    alternatives = ()


class FileHistory:
    """Every version of the accounts file the driver wrote, and when: what the
    daemon may have read, and so which versions the servers may end up holding."""

    def __init__(self):
        self.versions = []  # [t, text or None (deleted), valid, model]
        self.unable = []  # [t0, t1]: the daemon could not read (stopped, killed, restarting, down)

    def add(self, text, valid, mdl):
        self.versions.append([time.monotonic(), text, valid, mdl])

    def current(self):
        return self.versions[-1]

    def on_disk_during(self, t0, t1):
        out = []
        for i, v in enumerate(self.versions):
            end = self.versions[i + 1][0] if i + 1 < len(self.versions) else float("inf")
            if v[0] <= t1 and end >= t0:
                out.append(v)
        return out

    def able_time(self, t0, t1):
        """Seconds of [t0, t1] in which the daemon was running and could read the file."""
        total = t1 - t0
        for u0, u1 in self.unable:
            lo, hi = max(t0, u0), min(t1, u1 if u1 is not None else t1)
            if hi > lo:
                total -= hi - lo
        return total

    def acceptable(self, since_index, fallback, started):
        """The models the servers may hold now.

        The last version when it is valid: it is on disk and the daemon reads it.
        Else, with no daemon running (it refused a bad file at start): what the
        last check found or any valid version since, whichever the daemon that
        ran last had applied. Else what the running daemon may have read: the
        valid versions on disk since it started (or since the last check), from
        the last one that stood STABLE_SEC while it could read (that one was
        read: an earlier one may have been coalesced away)."""
        last = self.versions[-1]
        if last[2]:
            return [last[3]]
        since = [v[3] for v in self.versions[since_index:] if v[2]]
        if started is None:
            return [fallback] + since
        at_start = max([i for i, v in enumerate(self.versions) if v[0] <= started] or [0])
        first = max(at_start, since_index)
        out = [fallback] if at_start < since_index else []
        if not any(v[2] for v in self.versions[first:]):
            return [fallback] + since  # (it is about to refuse a bad file)
        now = time.monotonic()
        for i in range(first, len(self.versions)):
            t, text, valid, mdl = self.versions[i]
            if not valid:
                continue
            end = self.versions[i + 1][0] if i + 1 < len(self.versions) else now
            if self.able_time(max(t, started), end) >= STABLE_SEC:
                out = []
            out.append(mdl)
        return out


# ---- one run of a schedule ------------------------------------------------------------------

class Run:
    def __init__(self, schedule, keep=False):
        self.s = schedule
        self.keep = keep
        self.figures = {"steps": {}, "checks": 0, "converge": [], "races": 0, "skipped": {}}
        self.servers = None
        self.runner = None

    # set-up --------------------------------------------------------------------------------

    def setup(self):
        t0 = time.monotonic()
        self.mode = self.s.get("mode", "operator")
        self.servers = Servers(self.s["topology"], self.mode)
        sb = self.servers.sb
        sb.set_setting("log_level", "debug")
        sb.set_setting("resync_interval", "%ds" % RESYNC_SEC)
        sb.set_setting("request_timeout", "%gs" % REQUEST_TIMEOUT)
        for k, v in self.s.get("settings", {}).items():
            sb.set_setting(k, v)
        self.settle_sec = self.s.get("settle", SETTLE_SEC)
        self._classify()
        self.history = FileHistory()
        self.runner = (SystemdRunner if self.s["runner"] == "systemd" else PlainRunner)(self.servers, self.history)
        self.file = AccountsFile(self.runner.accounts_dir)
        self.file.write("rename", self.s["initial"])
        self.history.add(self.s["initial"], True, self.s["initial_model"])
        self.runner.start()
        self.sys_key = None
        self.prev = None  # the last check's view: {"t", "jwts": {key: jwt}, "names": {name: key}}
        self.foreign = {}  # jwt -> (t_start, t_end, account key)
        self.exports = {}  # account name -> {subject: (t_start, t_end)}
        self.lost_exports = {}  # account name -> {subject}
        self.accepted = self.s["initial_model"]  # what the last check found applied
        self.since_version = 0  # the first file version written after the last check
        self.touched = set(self.accepted)  # names listed in any valid file since the last check
        self.creds = {}
        self.last_event = time.monotonic()
        log("set-up %.1fs: %s, %s runner, %s mode, nats-server %s" % (
            time.monotonic() - t0, self.s["topology"], self.runner.kind, self.mode, sb.t["server"]))

    def _classify(self):
        """`nats-accountd check` of every file text the schedule writes: valid as meant, or a violation."""
        sb = self.servers.sb
        conf = sb.read("nats-accountd.conf").replace("file = accounts.yaml", "file = classify.yaml")
        sb.write("classify.conf", conf)
        texts = [("initial", self.s["initial"], True)] + [
            ("step %d" % i, st["text"], st["valid"]) for i, st in enumerate(self.s["steps"]) if "text" in st]
        self.classified = {}
        for where, text, valid in texts:
            if text in self.classified:
                continue
            sb.write("classify.yaml", text)
            r = harness.run([sb.t["accountd"], "-c", sb.path("classify.conf"), "check"])
            ok = r.returncode == 0
            if ok != valid or r.returncode not in (0, 65):
                raise Violation("files", "%s: meant %s, `check` says exit %d:\n%s\n--- file\n%s" % (
                    where, "valid" if valid else "invalid", r.returncode, r.stdout + r.stderr, text))
            self.classified[text] = ok

    # steps ------------------------------------------------------------------------------------

    def count(self, what, d="steps"):
        self.figures[d][what] = self.figures[d].get(what, 0) + 1

    def revive_if_good(self):
        """The operator's part: a daemon found to have refused a bad file while a
        good one is on disk (saved as it was starting, before it exited) is
        started again, as after a good save."""
        self.runner.poll()
        if self.runner.down and self.history.current()[2] and self.runner.revive():
            self.count("daemon started after a good save")
            return True
        return False

    def step(self, i, st):
        op = st["op"]
        sv = self.servers
        t = time.monotonic()
        self.revive_if_good()
        if op in ("edit", "restore"):
            self.file.write(st["method"], st["text"], partial=lambda: self.history.add("", False, None))
            self.history.add(st["text"], st["valid"], st.get("model"))
            self.count("%s-%s-%s" % (op, st["method"], "valid" if st["valid"] else "invalid"))
            if st["valid"]:
                self.touched |= set(st["model"])
                if self.runner.revive():
                    self.count("daemon started after a good save")
        elif op == "delete":
            self.file.delete()
            self.history.add(None, False, None)
            self.count(op)
        elif op == "pause":
            time.sleep(st["s"])
            self.count(op)
            return
        elif op in ("sighup", "reload", "restart", "daemon_kill", "daemon_stop"):
            self.runner.poll()
            done = {"sighup": self.runner.sighup, "reload": self.runner.reload, "restart": self.runner.restart,
                    "daemon_stop": self.runner.stop,
                    "daemon_kill": lambda: self.runner.kill_mid_pass(st["delay_ms"], self.last_step_start)}[op]()
            self.count(op, "steps" if done else "skipped")
        elif op == "daemon_cont":
            self.runner.cont()
            self.count(op)
        elif op == "server_kill":
            sv.nodes[st["node"]].hold = st["hold"]
            sv.kill(st["node"], st["signal"])
            self.count("server_kill" if st["signal"] == "KILL" else "node_down")
        elif op == "server_start":
            sv.wait_hold(st["node"])
            sv.start(st["node"])
            self.count(op)
        elif op == "server_stop":
            sv.nodes[st["node"]].hold = st["hold"]
            sv.stop(st["node"])
            self.count("server_stop>watchdog" if st["hold"] > WATCHDOG_SEC else "server_stop>request_timeout")
        elif op == "server_cont":
            sv.wait_hold(st["node"])
            sv.cont(st["node"])
            self.count(op)
        elif op in ("foreign_export", "foreign_drift"):
            if not self.foreign_push(st):
                self.count(op, "skipped")
            else:
                self.count(op)
        elif op == "check":
            self.check()
            return
        elif op.startswith("sabotage_"):
            self.sabotage(st)
        else:
            raise ValueError("unknown step %r" % op)
        self.runner.poll()
        self.last_event = time.monotonic()
        self.last_step_start = t

    def foreign_push(self, st):
        """Another tool re-signs an account's JWT (an export added, a limit changed) and pushes it;
        in config mode, someone edits an account's fragment by hand and reloads the servers."""
        sv = self.servers
        self.runner.poll()
        if self.runner.down or not self.runner.ready():
            return False  # no daemon runs (it refused a bad file): nobody to put it back
        if self.mode == "config":
            return self.fragment_drift(st)
        if len(sv.up()) != len(sv.nodes):
            return False  # it would reach only part of the deployment
        key = self.current_keys().get(st["account"])
        if not key:
            return False
        sb = sv.sb
        url = sv.nodes[st["node"]].url
        t0 = time.monotonic()
        # Like a tool that reads what the servers hold, the newest of their replies.
        r = sb.probe("gather", sb.sys_creds, url, "$SYS.REQ.ACCOUNT.%s.CLAIMS.LOOKUP" % key, "", 2000, len(sv.nodes))
        held = [l.strip() for l in r.stdout.splitlines() if l.strip().count(".") == 2]
        if not held:
            return False
        jwt = max(held, key=lambda j: jwt_claims(j).get("iat", 0))
        src = os.path.join(sb.root, "foreign-src.jwt")
        with open(src, "w") as f:
            f.write(jwt)
        if st["op"] == "foreign_export":
            r = sb.probe("resign-add-export", sb.signer, src, st["subject"])
        else:
            # What nsc would write: a tiered account's first tier, else the flat limits.
            lim = (jwt_claims(jwt).get("nats") or {}).get("limits") or {}
            patch = st["patch"]["limits"]
            tiered = lim.get("tiered_limits") or {}
            if tiered and set(patch) & set(model.JS_CLAIM.values()):
                tier = sorted(tiered)[0]
                patch = {"tiered_limits": {tier: patch}}
            r = sb.probe("resign-merge", sb.signer, src, json.dumps({"limits": patch}))
        if r.returncode != 0:
            raise EnvironmentBroken("nats-probe resign: %s" % r.stderr)
        new = r.stdout.strip()
        r = sb.probe("gather", sb.sys_creds, url, "$SYS.REQ.ACCOUNT.%s.CLAIMS.UPDATE" % key, new, 3000, len(sv.nodes))
        t1 = time.monotonic()
        self.foreign[new] = (t0, t1, key)
        replies = [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
        if len(replies) < len(sv.nodes) or any((x.get("data") or {}).get("code") != 200 for x in replies):
            # Refused (newer servers keep a JWT with a later iat, one pushed meanwhile) or not
            # confirmed by all: the tool would say so; nothing to expect of it.
            self.count(st["op"] + " refused", "skipped")
            return True
        if st["op"] == "foreign_export":
            self.exports.setdefault(st["account"], {})[st["subject"]] = (t0, t1)
        return True

    def fragment_drift(self, st):
        path = os.path.join(self.servers.sb.dir, "accounts.d", "%s.conf" % st["account"])
        if not os.path.exists(path) or len(self.servers.up()) != len(self.servers.nodes):
            return False
        mib = model.MiB
        text = "# edited by hand\njetstream {\n  max_mem: %d\n  max_file: %d\n}\n" % (
            (st["patch"]["limits"].get("streams") or 1) * mib, (st["patch"]["limits"].get("conn") or 3) * mib)
        t0 = time.monotonic()
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.rename(path + ".tmp", path)
        for n in self.servers.up():
            os.kill(n.srv.proc.pid, signal.SIGHUP)
        self.foreign[text] = (t0, time.monotonic(), st["account"])
        return True

    def sabotage(self, st):
        """What --selftest does behind the daemon's back, to show each invariant can fail."""
        sv = self.servers
        sb = sv.sb
        if st["op"] == "sabotage_kill_daemon":
            # A crash, as far as the driver can tell: nobody asked for it.
            os.kill(self.runner.current.pid, signal.SIGSEGV)
            self.runner.current.proc.wait(timeout=10)
            return
        if st["op"] == "sabotage_fragment":
            self.fragment_drift(dict(st, patch={"limits": {"streams": 2, "conn": 5}}))
            self.foreign.clear()  # not registered: as if the daemon had written it
            return
        key = self.current_keys()[st["account"]]
        if st["op"] == "sabotage_copy_key":
            n = sv.nodes[0]
            with open(os.path.join(n.jwt_dir, key + ".jwt")) as f:
                jwt = f.read()
            with open(os.path.join(n.jwt_dir, "A" + "B" * 55 + ".jwt"), "w") as f:
                f.write(jwt)
            return
        if st["op"] == "sabotage_repush_first":
            first = [j for t in sv.tails for _, j in t.snapshot() if jwt_claims(j).get("sub") == key]
            new = first[0]
        else:  # sabotage_push: another tool's change the driver does not register as such
            r = sb.request(sb.sys_creds, "$SYS.REQ.ACCOUNT.%s.CLAIMS.LOOKUP" % key, "", 2000)
            src = os.path.join(sb.root, "sabotage.jwt")
            with open(src, "w") as f:
                f.write(r.stdout.strip())
            r = sb.probe("resign-merge", sb.signer, src, json.dumps(st["patch"]))
            new = r.stdout.strip()
        sb.gather_json("$SYS.REQ.ACCOUNT.%s.CLAIMS.UPDATE" % key, len(sv.nodes), new)

    def current_keys(self):
        """name -> key of the accounts the first up server holds (its resolver folder)."""
        out = {}
        for key, jwt in self.servers.stored(self.servers.up()[0] if self.servers.up() else self.servers.nodes[0]).items():
            try:
                out.setdefault(jwt_claims(jwt).get("name"), key)
            except (ValueError, HarnessError):
                pass
        return out

    # the check -------------------------------------------------------------------------------

    def check(self):
        t_check = time.monotonic()
        self.figures["checks"] += 1
        healed = self.servers.heal()
        self.runner.heal()
        if self.revive_if_good():
            healed = True
        if healed:
            self.count("healed-by-check")
        t_fault_end = max(time.monotonic() if healed else self.last_event, self.last_event)
        deadline = time.monotonic() + self.settle_sec
        self.runner.settle()
        def with_mixes(base, mix, per_node):
            """The acceptable files, the mixes first (the whole versions are preferred),
            each mix following what the stores hold now."""
            out = list(base)
            if mix:
                out.insert(0, self.mixed(base))
            if per_node:
                shared = self.mixed(base) if self.mode == "config" else None  # one folder of fragments
                out.insert(0, PerNode({n.name: shared or self.mixed(base, [n]) for n in self.servers.nodes}))
            wants = [want_of(m) for m in out]
            for w in wants:
                if isinstance(w, PerNode):
                    w.alternatives = [want_of(b) for b in base]
            self.tolerate_foreign(wants)
            self.tolerate_unchanged(wants)
            return out, wants

        def want_of(m):
            if isinstance(m, PerNode):
                return PerNode({node: want_of(d) for node, d in m.items()})
            return {n: model.expected_claims(d, self.mode) for n, d in m.items()}

        def acceptable():
            base = self.history.acceptable(self.since_version, self.accepted, self.runner.started())
            down = bool(self.runner.down)
            # No daemon runs (it refused a bad file at start) after one was SIGKILLed in
            # the middle of a pass: each account may hold any of the versions that one
            # could have pushed, not one version for all.
            mix = down and len(base) > 1 and any(k >= (self.prev["t"] if self.prev else 0) for k in self.runner.kills)
            # No daemon runs, and on a cluster a node may not have confirmed the last
            # pushes of the daemon that ran before (it was down, or hung, and that daemon
            # was stopped before its retry): nothing puts that node level with the others
            # until a daemon runs again (SPEC: a bad file at start is fatal). Each node
            # then holds, per account, one of the versions since the last check.
            # In config mode the fragments are one folder for all nodes, but a node that
            # did not answer the reload runs what it read before.
            per_node = down and len(base) > 1 and len(self.servers.nodes) > 1
            candidates, wants = with_mixes(base, mix, per_node)
            return base, candidates, wants, mix, per_node, down

        base, candidates, wants, mix, per_node, down = acceptable()
        # Settled: the daemon says it is in sync (or none runs: it refused a bad
        # file), every server stores one of the acceptable files (the resolver
        # folders: cheap to poll), and every server applies that same file
        # (ACCOUNT.INFO, a user's $JS.API.INFO). The daemon's word only says
        # when to look; what counts is what the servers show.
        why = None
        first_match = {}  # candidate -> when the stores first held it
        stuck_since = None
        quiet_from = self.last_event + 0.2  # a save's pass may be 50 ms away: look again after that
        while True:
            self.runner.poll()
            if bool(self.runner.down) != down:
                # The daemon turned out to have refused a bad file (it exited as the
                # check began): what the servers may hold is what no daemon left them,
                # unless a good file is on disk by now, which starts it again.
                if self.revive_if_good():
                    self.runner.settle()
                    deadline = max(deadline, time.monotonic() + self.settle_sec)
                base, candidates, wants, mix, per_node, down = acceptable()
                first_match = {}
            elif mix or per_node:
                candidates, wants = with_mixes(base, mix, per_node)
            for i, want in enumerate(wants):
                if i not in first_match and not self.store_problems(want):
                    first_match[i] = time.monotonic()
            if time.monotonic() < quiet_from:
                time.sleep(0.02)
                continue
            status = None if self.runner.down else self.runner.status()
            idle = bool(self.runner.down) or self.runner.idle()  # once: the log may grow between two looks
            settled = self.runner.down or (idle and (status is None or status.startswith("in sync")))
            if not settled:
                stuck_since = None
            elif stuck_since is None:
                stuck_since = time.monotonic()
            # Looked at before the stores: a sweep that ends between the look at the stores
            # and this one has changed them after they were read (seed 80100109).
            swept = stuck_since is not None and idle and self.runner.full_pass_since(stuck_since)
            if not idle:
                why = Violation("daemon", "a pass still runs %ds after the last fault" % self.settle_sec)
            elif status is not None and not status.startswith("in sync"):
                why = Violation("daemon", "still says %r %ds after the last fault" % (status, self.settle_sec))
            else:
                stored = [i for i, want in enumerate(wants) if not self.store_problems(want)]
                for i in list(first_match):
                    if i not in stored:
                        del first_match[i]  # held for a moment only: it counts from when it is held for good
                for i in stored:
                    first_match.setdefault(i, time.monotonic())  # the stores took it since the look above
                if not stored:
                    # What differs from each version (the newest first): which node kept what.
                    per = []
                    for k, w in reversed(list(enumerate(wants))):
                        p = self.store_problems(w)
                        per.append(("version %d of %d%s:\n    " % (k + 1, len(wants), " (per node)" if isinstance(
                            w, PerNode) else "") if len(wants) > 1 else "") + "\n    ".join(
                            p[:12] + (["... and %d more" % (len(p) - 12)] if len(p) > 12 else [])))
                    why = Violation("applied", "after %ds the servers' stores still differ from the %sfile:\n  %s" % (
                        self.settle_sec, "last good " if len(wants) == 1 else "%d last good versions of the " % len(wants),
                        "\n  ".join(per)))
                else:
                    # The newest of the files the stores hold that the servers also apply.
                    problems = None
                    for i in reversed(stored):
                        p = self.applied_problems(wants[i])
                        if not p:
                            chosen = i
                            break
                        problems = problems or p
                    if not p:
                        break
                    if any(TRANSIENT_RE.search(x) for x in problems):
                        stuck_since = None  # a server that does not answer yet: not settled
                    why = Violation("applied", "after %ds the servers do not apply the file they store:\n  %s" % (
                        self.settle_sec, "\n  ".join(problems)))
            if time.monotonic() > deadline:
                why.args = (why.args[0].replace("after %ds" % self.settle_sec, "after %.0fs" % (
                    time.monotonic() - t_fault_end)),)
                raise why
            # Idle and "in sync" while the servers differ, through a whole pass
            # (the resync) begun since: nothing will change any more.
            if swept and stuck_since is not None:  # (a server not answering yet resets it above)
                why.args = ("%s (a whole pass since changed nothing)" % why.args[0].replace(
                    "after %ds" % self.settle_sec, "after %.0fs" % (time.monotonic() - t_fault_end)),)
                raise why
            time.sleep(0.1)
        t_applied = time.monotonic()
        t_stored = first_match[chosen]
        self.figures["converge"].append(round(t_stored - t_fault_end, 3))
        self.check_unmanaged()
        self.check_iat()
        if isinstance(candidates[chosen], PerNode):
            # The nodes differ (no daemon runs to level them): every version since the
            # last check stays acceptable until one does.
            self.check_journal(set().union(*candidates[chosen].values()))
        else:
            self.check_journal(candidates[chosen])
            self.accepted = candidates[chosen]
            self.since_version = len(self.history.versions)
        self.prev = {"t": time.monotonic(), "jwts": self.snapshot()}
        self.touched = set(self.accepted)
        self.last_event = time.monotonic()
        log("check %d: the servers held the file %.2fs after the last fault (verified applied %.2fs), "
            "checked in %.1fs%s" % (self.figures["checks"], self.figures["converge"][-1], t_applied - t_fault_end,
            time.monotonic() - t_check, "; the daemon is down: the file is bad" if self.runner.down else "")
            + ("; each node, each account as one of the versions since the last check" if isinstance(
                candidates[chosen], PerNode) else "")
            + ("; each account as one of the versions the daemon killed mid-pass pushed" if mix and not isinstance(
                candidates[chosen], PerNode) and chosen == (1 if per_node else 0) else ""))

    def tolerate_unchanged(self, wants):
        """No daemon runs, on a cluster (operator mode): a node down or hung
        since the last check may have been out of sight of every daemon that
        ran since (seed 91400077: c2 down while two daemons ran, each on the
        two servers it found; then a bad file). Nothing puts it level until a
        daemon runs again, so an account it still holds exactly as the last
        check found it (the same JWT) is what it must show for that account."""
        if not self.runner.down or self.mode == "config" or not self.prev:
            return
        since = self.prev["t"]
        for n in self.servers.nodes:
            if n.since < since:
                continue
            before = self.prev["jwts"].get(n.name, {})
            for name, held in self.by_name(self.servers.stored(n)).items():
                if len(held) != 1 or before.get(held[0][0]) != held[0][1]:
                    continue
                st = model.claims_state(held[0][2].get("nats") or {})
                for w in wants:
                    exp = w[n.name].get(name) if isinstance(w, PerNode) else None
                    if exp is None:
                        continue
                    w[n.name][name] = {"js": None if exp["js"] is None else st["js"],
                                       "limits": None if exp["limits"] is None else
                                       {f: st["limits"].get(f) for f in exp["limits"]}}

    def tolerate_foreign(self, wants):
        """No daemon runs (it refused a bad file at start): a managed account that
        another tool changed since the last check keeps that tool's limits until
        a daemon runs again, so those are what the servers must show for it. In config
        mode that is the fragment the other tool wrote (and reloaded the servers on)."""
        if not self.runner.down:
            return
        since = self.prev["t"] if self.prev else 0.0
        recent = {j for j, (t0, t1, key) in self.foreign.items() if t1 >= since}
        if not recent:
            return
        if self.mode == "config":
            for name, (text, _) in self.fragments().items():
                if text not in recent:
                    continue
                for w in [x for w in wants for x in (list(w.values()) + list(w.alternatives) if isinstance(w, PerNode)
                                                      else [w])]:
                    exp = w.get(name)
                    if exp is None:
                        continue
                    got = fragment_limits(text)
                    w[name] = {"js": None if exp["js"] is None else fragment_js(text),
                               "limits": None if exp["limits"] is None else {f: got.get(f) for f in exp["limits"]}}
            return
        for n in self.servers.nodes:
            for name, held in self.by_name(self.servers.stored(n)).items():
                if len(held) != 1 or held[0][1] not in recent:
                    continue
                st = model.claims_state(held[0][2].get("nats") or {})
                for w in [x for w in wants for x in ([w[n.name]] + list(w.alternatives) if isinstance(w, PerNode)
                                                      else [w])]:
                    exp = w.get(name)
                    if exp is None:
                        continue
                    w[name] = {"js": None if exp["js"] is None else st["js"],
                               "limits": None if exp["limits"] is None else
                               {f: st["limits"].get(f) for f in exp["limits"]}}

    def mixed(self, candidates, nodes=None):
        """Per account, the newest of the candidates' declarations the stores (of nodes) hold
        (else the newest); an account some candidate does not list is left out (unmanaged then)."""
        out = {}
        for name in sorted(set().union(*[set(c) for c in candidates])):
            having = [c[name] for c in candidates if name in c]
            if len(having) < len(candidates):
                continue
            out[name] = having[-1]
            for d in reversed(having):
                want = {name: model.expected_claims(d, self.mode)}
                if not (self.config_store_problems(want, varz=False) if self.mode == "config"
                        else self.store_problems(want, nodes)):
                    out[name] = d
                    break
        return out

    def by_name(self, stored):
        out = {}
        for key, jwt in stored.items():
            try:
                c = jwt_claims(jwt)
            except (ValueError, HarnessError):
                continue
            out.setdefault(c.get("name"), []).append((key, jwt, c))
        return out

    def fragments(self):
        out = {}
        for p in glob.glob(os.path.join(self.servers.sb.dir, "accounts.d", "*.conf")):
            try:
                with open(p) as f:
                    out[os.path.basename(p)[:-5]] = (f.read(), os.stat(p).st_mtime)
            except OSError:
                pass
        return out

    def config_store_problems(self, want, varz=True):
        """Config mode: each managed fragment's limits {} as the file says, and (varz) every
        server has read its config since the fragments were last written (VARZ config_load_time)."""
        problems = []
        frags = self.fragments()
        newest = 0.0
        for name, exp in sorted(want.items()):
            text, mtime = frags.get(name, ("", 0.0))
            newest = max(newest, mtime)
            if exp["js"] is not None:
                got_js = fragment_js(text)
                if got_js != exp["js"]:
                    problems.append("fragment of %s: jetstream: want %s, has %s" % (name, exp["js"], got_js))
            if exp["limits"] is None:
                continue
            got = fragment_limits(text)
            for f, v in exp["limits"].items():
                if got.get(f) != v:
                    problems.append("fragment of %s: %s: want %s, has %s" % (name, f, v, got.get(f)))
        if not varz:
            return problems
        try:
            varz = self.servers.sb.gather_json("$SYS.REQ.SERVER.PING.VARZ", len(self.servers.nodes), timeout_ms=2000)
        except HarnessError as e:
            return problems + ["VARZ: %s" % e]
        for v in varz:
            t = (v.get("data") or {}).get("config_load_time", "")
            loaded = parse_time(t)
            if loaded is None or loaded < newest:
                problems.append("%s: config read at %s, before the last fragment was written" % (
                    (v.get("server") or {}).get("name"), t))
        return problems

    def config_applied_problems(self, want, nodes=None):
        """Config mode: a user's $JS.API.INFO on each server (of nodes), and the JetStream
        reservations each reports."""
        problems = []
        sb = self.servers.sb
        nodes = nodes or self.servers.nodes
        names = {n.name for n in nodes}
        for name, exp in sorted(want.items()):
            if exp["js"] is None:
                continue
            for n in nodes:
                r = sb.request(sb.user(name), "$JS.API.INFO", "", 3000, url=n.url)
                if r.returncode != 0:
                    problems.append("%s: %s: $JS.API.INFO as a user failed: %s" % (n.name, name, r.stderr.strip()))
                    continue
                info = model.js_info_state(json.loads(r.stdout))
                problems += ["%s: %s: %s" % (n.name, name, d) for d in model.js_info_differences(exp["js"], info)]
            r = sb.probe("gather", sb.sys_creds, sb.url, "$SYS.REQ.ACCOUNT.%s.JSZ" % name, "", 3000,
                         len(self.servers.nodes))
            for line in r.stdout.splitlines():
                try:
                    doc = json.loads(line)
                except ValueError:
                    continue
                server = (doc.get("server") or {}).get("name")
                if server not in names:
                    continue
                d = doc.get("data")
                if exp["js"] == "disabled":
                    if d and not doc.get("error") and (d.get("reserved_memory") or d.get("reserved_storage")):
                        problems.append("%s: %s: JSZ reserves %s/%s with JetStream disabled" % (
                            server, name, d.get("reserved_memory"), d.get("reserved_storage")))
                    continue
                flat = exp["js"]["flat"]
                want_res = (flat["max_memory"] % 2 ** 64, flat["max_store"] % 2 ** 64)
                got_res = (d.get("reserved_memory"), d.get("reserved_storage")) if d else None
                if got_res != want_res:
                    problems.append("%s: %s: JSZ reserved %s, want %s" % (server, name, got_res, want_res))
        return problems

    def store_problems(self, want, nodes=None):
        if isinstance(want, PerNode) and self.mode == "config":
            # One folder of fragments for all nodes: per account, one of the versions.
            # A node that has not read them since runs an older one (applied_problems).
            problems = []
            for name in sorted(set().union(*want.values())):
                options = [w[name] for w in list(want.values()) + list(want.alternatives) if name in w]
                first = None
                for exp in options:
                    p = self.config_store_problems({name: exp}, varz=False)
                    if not p:
                        break
                    first = first or p
                else:
                    problems += first or []
            return problems
        if isinstance(want, PerNode):
            return [p for n in self.servers.nodes for p in self.store_problems(want[n.name], [n])]
        if self.mode == "config":
            return self.config_store_problems(want, varz=nodes is None)
        if self.exports:
            self.classify_lost_exports()
        problems = []
        for n in nodes or self.servers.nodes:
            names = self.by_name(self.servers.stored(n))
            for name, exp in sorted(want.items()):
                held = names.get(name, [])
                if len(held) > 1:
                    raise Violation("one-key", "%s holds %d accounts named %s: %s" % (
                        n.name, len(held), name, ", ".join(k for k, _, _ in held)))
                if not held:
                    problems.append("%s: no account %s" % (n.name, name))
                    continue
                _, _, claims = held[0]
                diffs = model.claims_differences(exp, model.claims_state(claims.get("nats") or {}))
                lost = self.missing_exports(name, claims)
                problems += ["%s: %s: %s" % (n.name, name, d) for d in diffs + lost]
        return problems

    def missing_exports(self, name, claims):
        have = {e.get("subject") for e in (claims.get("nats") or {}).get("exports") or []}
        lost = self.lost_exports.get(name, set())
        return ["export %s lost" % s for s in sorted(self.exports.get(name, {})) if s not in have and s not in lost]

    def creds_for(self, name, key):
        if self.creds.get(name, (None,))[0] != key:
            self.creds[name] = (key, self.runner.user_creds(name))
        return self.creds[name][1]

    def applied_problems(self, want, nodes=None):
        if isinstance(want, PerNode):
            out = []
            for n in self.servers.nodes:
                for name, exp in sorted(want[n.name].items()):
                    # What the node runs ($JS.API.INFO) and the JWT it has loaded
                    # (ACCOUNT.INFO) may each be one of the versions.
                    tried, js_ok, jwt_ok, first, others = [], False, False, None, []
                    for d in [exp] + [alt[name] for alt in want.alternatives if name in alt]:
                        if d in tried:
                            continue
                        tried.append(d)
                        q = self.applied_problems({name: d}, [n])
                        if first is None:
                            first = q
                        else:
                            others.append("; ".join(x.split(": ", 2)[-1] for x in q))
                        # Config mode: what a user's $JS.API.INFO says and what JSZ reserves
                        # may each be one of them too (seen on 2.11.17 after reloads cut short
                        # by daemon kills: the two disagreed on one node for as long as no
                        # daemon ran).
                        js_ok = js_ok or not [x for x in q if ": $JS.API.INFO" in x]
                        jwt_ok = jwt_ok or not [x for x in q if ": $JS.API.INFO" not in x]
                        if js_ok and jwt_ok:
                            break
                    else:
                        out += first + ["%s: %s: other version %d: %s" % (n.name, name, k + 2, o)
                                        for k, o in enumerate(others)]
            return out
        if self.mode == "config":
            return self.config_applied_problems(want, nodes)
        nodes = nodes or self.servers.nodes
        problems = []
        sb = self.servers.sb
        keys = self.current_keys()
        for name, exp in sorted(want.items()):
            key = keys[name]
            creds = self.creds_for(name, key)
            for n in nodes:
                # A user's connection also loads the account on that server (ACCOUNT.INFO needs it).
                r = sb.request(creds, "$JS.API.INFO", "", 3000, url=n.url)
                if r.returncode != 0:
                    problems.append("%s: %s: $JS.API.INFO as a user failed: %s" % (n.name, name, r.stderr.strip()))
                    continue
                info = model.js_info_state(json.loads(r.stdout))
                problems += ["%s: %s: %s" % (n.name, name, d) for d in model.js_info_differences(exp["js"], info)]
            replies = {}
            r = sb.probe("gather", sb.sys_creds, sb.url, "$SYS.REQ.ACCOUNT.%s.INFO" % key, "", 3000,
                         len(self.servers.nodes))
            for line in r.stdout.splitlines():
                try:
                    doc = json.loads(line)
                except ValueError:
                    continue
                replies[(doc.get("server") or {}).get("name")] = doc
            for n in nodes:
                doc = replies.get(n.name)
                if not doc:
                    problems.append("%s: %s: no ACCOUNT.INFO reply" % (n.name, name))
                    continue
                d = doc.get("data") or {}
                if not d or doc.get("error"):
                    problems.append("%s: %s: ACCOUNT.INFO error %s" % (n.name, name, doc.get("error")))
                    continue
                if d.get("complete") is False:
                    problems.append("%s: %s: the server marks the account incomplete" % (n.name, name))
                if exp["js"] is not None and d.get("jetstream_enabled") != (exp["js"] != "disabled"):
                    problems.append("%s: %s: jetstream_enabled %s" % (n.name, name, d.get("jetstream_enabled")))
                nats = (d.get("decoded_jwt") or {}).get("nats") or {}
                diffs = model.claims_differences(exp, model.claims_state(nats))
                problems += ["%s: %s: loaded %s" % (n.name, name, x) for x in diffs]
        return problems

    def snapshot(self):
        """{place: {id: blob}}: each node's {key: JWT}; in config mode the fragments folder's {name: text}."""
        if self.mode == "config":
            return {"accounts.d": {name: text for name, (text, _) in self.fragments().items()}}
        return {n.name: self.servers.stored(n) for n in self.servers.nodes}

    def blob_name(self, ident, blob):
        return ident if self.mode == "config" else jwt_claims(blob).get("name")

    def blob_state(self, blob):
        """What of a JWT (a fragment) the daemon manages: equal states, nothing to report."""
        if self.mode == "config":
            return [l for l in blob.splitlines() if not l.startswith("#")]
        return model.claims_state(jwt_claims(blob).get("nats") or {})

    def check_unmanaged(self):
        """Accounts no valid file listed since the last check keep their JWT (or what another tool pushed)."""
        if not self.prev:
            return
        now = self.snapshot()
        for node, jwts in now.items():
            before = self.prev["jwts"].get(node, {})
            for key, jwt in jwts.items():
                old = before.get(key)
                if old is None or old == jwt:
                    continue
                name = self.blob_name(key, jwt)
                if name in self.touched:
                    continue
                if jwt in self.foreign:
                    continue
                raise Violation("unmanaged", "%s: %s (%s), listed in no valid file since the last check, "
                                "changed:\n  before %s\n  now    %s" % (
                                    node, name, key, self.blob_state(old), self.blob_state(jwt)))

    def check_iat(self):
        """Each JWT the daemon pushed has an iat above the one it replaced, in every recording."""
        starts = self.runner.pass_starts()
        for tail in self.servers.tails:
            last = {}  # key -> (t, jwt, iat)
            for t, jwt in tail.snapshot():
                try:
                    c = jwt_claims(jwt)
                except (ValueError, HarnessError):
                    raise Violation("iat", "unreadable JWT pushed: %r" % jwt[:80])
                key = c.get("sub")
                prev = last.get(key)
                last[key] = (t, jwt, c.get("iat"))
                if prev is None or prev[1] == jwt or jwt in self.foreign:
                    continue
                if c.get("iat", 0) > prev[2]:
                    continue
                if prev[1] in self.foreign:
                    started = max([s for s in starts if s <= t] or [0])
                    if prev[0] >= started - RACE_SLACK:
                        continue  # the pass read the JWT before the other tool pushed
                raise Violation("iat", "%s (%s): the daemon pushed iat %s after iat %s%s" % (
                    c.get("name"), key, c.get("iat"), prev[2], " (another tool's)" if prev[1] in self.foreign else ""))

    def classify_lost_exports(self):
        """Exports gone from the servers because a pass raced the other tool's push: allowed, counted."""
        starts = None
        held = self.by_name(self.servers.stored(self.servers.up()[0] if self.servers.up() else self.servers.nodes[0]))
        for name, subjects in self.exports.items():
            jwts = held.get(name) or []
            have = {e.get("subject") for _, _, c in jwts[:1] for e in (c.get("nats") or {}).get("exports") or []}
            for subject, (t0, t1) in subjects.items():
                if subject in have or subject in self.lost_exports.get(name, set()):
                    continue
                starts = starts if starts is not None else self.runner.pass_starts()
                if self.export_lost_in_race(name, subject, t0, t1, starts):
                    self.lost_exports.setdefault(name, set()).add(subject)
                    self.figures["races"] += 1

    def export_lost_in_race(self, name, subject, t0, t1, starts):
        """True when the export is gone from the servers and a pass that started before the push
        ended pushed the account after it."""
        key = self.current_keys().get(name)
        for tail in self.servers.tails:
            for t, jwt in tail.snapshot():
                if t < t0 or jwt in self.foreign:
                    continue
                c = jwt_claims(jwt)
                if c.get("sub") != key:
                    continue
                has = any(e.get("subject") == subject for e in (c.get("nats") or {}).get("exports") or [])
                started = max([s for s in starts if s <= t] or [0])
                if not has and started <= t1 + RACE_SLACK:
                    return True
        return False

    def check_journal(self, accepted):
        """A line per account whose JWT the daemon changed since the last check (unless it was SIGKILLed)."""
        if not self.prev:
            return
        since = self.prev["t"]
        if any(k >= since for k in self.runner.kills):
            return
        logged = {}
        for _, line in self.runner.lines(since):
            m = ACTION_RE.match(line)
            if m:
                logged.setdefault(m.group("name"), []).append(line)
        for node, jwts in self.snapshot().items():
            before = self.prev["jwts"].get(node, {})
            for key, jwt in jwts.items():
                if before.get(key) == jwt or jwt in self.foreign:
                    continue
                name = self.blob_name(key, jwt)
                if name not in accepted:
                    continue
                old = before.get(key)
                if old and self.blob_state(old) == self.blob_state(jwt):
                    continue  # the same limits again (a retry to a server that missed it)
                if not logged.get(name):
                    raise Violation("journal", "%s: %s's %s changed since the last check, and no line says so:"
                                    "\n  before %s\n  now    %s\n--- log since the last check:\n%s" % (
                                        node, name, "fragment" if self.mode == "config" else "JWT",
                                        self.blob_state(old) if old else None, self.blob_state(jwt),
                                        "\n".join(l for _, l in self.runner.lines(since))[-4000:]))

    def check_secrets(self):
        sb = self.servers.sb
        secrets = set()
        for p in glob.glob(sb.path("*.nk")) + glob.glob(sb.path("*.creds")) + glob.glob(os.path.join(
                self.runner.state_dir(), "*")):
            try:
                with open(p) as f:
                    secrets |= set(SEED_RE.findall(f.read()))
            except OSError:
                pass
        with open(sb.sys_creds) as f:
            m = re.search(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", f.read())
            if m:
                secrets.add(m.group(0))
        for tail in self.servers.tails:
            for _, jwt in tail.snapshot():
                parts = jwt.split(".")
                if len(parts) == 3 and len(parts[2]) > 40:
                    secrets.add(parts[2])
        text = self.runner.secrets_text()
        if "NKEY SEED" in text or SEED_RE.search(text):
            raise Violation("journal", "something shaped like an nkey seed is in the log")
        for s in secrets:
            if s in text:
                raise Violation("journal", "a secret (%s...) is in the log" % s[:4])

    # the whole run ------------------------------------------------------------------------------

    def execute(self):
        """Run every step; returns (violation or None, index of the step it happened at)."""
        self.last_step_start = time.monotonic()
        try:
            self.setup()
            for i, st in enumerate(self.s["steps"]):
                self.index = i
                self.step(i, st)
            self.check_secrets()
        except Violation as v:
            # What the daemon said, for the report (the violation names what the servers showed).
            try:
                v.daemon_log = self.runner.log_text() if self.runner else ""
            except Exception as e:  # a runner that cannot tell any more: say so, keep the violation
                v.daemon_log = "(the daemon's log could not be read: %s)" % e
            return v, getattr(self, "index", -1)
        return None, None

    def cleanup(self):
        problems = None
        try:
            if self.runner:
                self.runner.cleanup()
        finally:
            if self.servers:
                try:
                    self.servers.cleanup(getattr(self, "foreign", {}))
                except HarnessError as e:
                    problems = str(e)
        return problems


# ---- schedules: run, report, shrink ------------------------------------------------------------

_versions = {}


def server_version(binary):
    if binary not in _versions:
        r = subprocess.run([binary, "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        m = re.search(r"v?(\d+\.\d+\.\d+)", r.stdout)
        _versions[binary] = m.group(1) if m else binary
    return _versions[binary]


def describe(st):
    keys = [k for k in st if k not in ("op", "text", "model")]
    extra = " ".join("%s=%s" % (k, st[k]) for k in keys)
    return "%s %s" % (st["op"], extra)


def run_schedule(schedule, quiet=False):
    """(violation, step index, figures)."""
    if schedule.get("server"):
        os.environ["NATS_SERVER"] = schedule["server"]
    run = Run(schedule)
    try:
        v, at = run.execute()
    except EnvironmentBroken:
        run.cleanup()
        raise
    except HarnessError as e:
        run.cleanup()
        raise EnvironmentBroken(str(e))
    except BaseException:
        run.cleanup()  # a bug of the driver or ^C: no server or booted systemd left behind
        raise
    oracle = run.cleanup()
    if v is None and oracle:
        v, at = Violation("jwtcheck", oracle), len(schedule["steps"]) - 1
    return v, at, run.figures


def prefix_through(schedule, at):
    """The schedule up to the check where `at` failed (a violation inside a step counts at that step)."""
    steps = schedule["steps"][:at + 1]
    if not steps or steps[-1]["op"] != "check":
        steps = steps + [{"op": "check"}]
    return dict(schedule, steps=steps)


def shrink(schedule, kind, budget_sec):
    """Drop chunks of steps (then single ones) while the same kind of violation still shows."""
    best = schedule
    deadline = time.monotonic() + budget_sec
    chunk = max(1, len(best["steps"]) // 2)
    while chunk >= 1 and time.monotonic() < deadline:
        i = 0
        progressed = False
        # The last step (the check that failed) stays.
        while i < len(best["steps"]) - 1 and time.monotonic() < deadline:
            cand_steps = best["steps"][:i] + best["steps"][i + chunk:len(best["steps"]) - 1] + best["steps"][-1:]
            cand = dict(best, steps=cand_steps)
            try:
                v, at, _ = run_schedule(cand)
            except EnvironmentBroken as e:
                log("shrink: environment broke (%s); skipping a candidate" % e)
                v = None
            if v is not None and v.kind == kind:
                best = prefix_through(cand, at)
                log("shrink: %d steps still fail (%s)" % (len(best["steps"]), kind))
                progressed = True
            else:
                i += chunk
        if not progressed:
            chunk //= 2
    return best


def save(schedule, outdir, name):
    os.makedirs(outdir, exist_ok=True)
    p = os.path.join(outdir, name)
    with open(p, "w") as f:
        json.dump(schedule, f, indent=1)
    return p


def percentile(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, int(round(p / 100.0 * len(xs) + 0.5)) - 1))
    return xs[k]


def summarize(total, wall):
    conv = total["converge"]
    lines = ["schedules: %d, steps: %d, checks: %d, violations: %d, environment failures: %d, %.0f s" % (
        total["schedules"], sum(total["steps"].values()), total["checks"], len(total["violations"]),
        total["broken"], wall)]
    lines.append("schedules by mode/topology/runner/server: " + ", ".join("%s %d" % kv for kv in sorted(
        total["kinds"].items())))
    lines.append("steps by kind: " + ", ".join("%s %d" % kv for kv in sorted(total["steps"].items())))
    if total["skipped"]:
        lines.append("skipped (not applicable then): " + ", ".join("%s %d" % kv for kv in sorted(
            total["skipped"].items())))
    lines.append("exports lost to a pass racing the other tool: %d" % total["races"])
    if conv:
        lines.append("time to converge after the last fault: p50 %.2fs, p99 %.2fs, max %.2fs (%d checks)" % (
            percentile(conv, 50), percentile(conv, 99), max(conv), len(conv)))
    for v in total["violations"]:
        lines.append("VIOLATION %s" % v)
    return "\n".join(lines)


def merge_figures(total, fig):
    for k in ("steps", "skipped"):
        for kind, n in fig[k].items():
            total[k][kind] = total[k].get(kind, 0) + n
    total["checks"] += fig["checks"]
    total["converge"] += fig["converge"]
    total["races"] += fig["races"]


def run_and_report(schedule, args, total):
    log("schedule seed %d: %d steps, %s, %s runner, %s mode%s" % (
        schedule["seed"], len(schedule["steps"]), schedule["topology"], schedule["runner"], schedule["mode"],
        ", " + schedule["server"] if schedule.get("server") else ""))
    kind = "%s/%s/%s/%s" % (schedule["mode"], schedule["topology"], schedule["runner"],
                            server_version(schedule.get("server") or os.environ.get("NATS_SERVER") or "nats-server"))
    total["kinds"][kind] = total["kinds"].get(kind, 0) + 1
    try:
        v, at, fig = run_schedule(schedule)
    except EnvironmentBroken as e:
        log("environment broke, schedule abandoned (seed %d): %s" % (schedule["seed"], e))
        total["broken"] += 1
        return True
    merge_figures(total, fig)
    total["schedules"] += 1
    if v is None:
        return True
    failing = prefix_through(schedule, at)
    p = save(failing, args.out, "failing-%d.json" % schedule["seed"])
    if getattr(v, "daemon_log", None):
        with open(os.path.join(args.out, "daemon-%d.log" % schedule["seed"]), "w") as f:
            f.write(v.daemon_log)
    log("VIOLATION (seed %d, at step %d: %s)\n%s" % (schedule["seed"], at, describe(schedule["steps"][at]), v))
    log("the schedule up to there (%d steps): %s (the daemon's log beside it)\nreplay: %s --replay %s" % (
        len(failing["steps"]), p, sys.argv[0], p))
    total["violations"].append("seed %d step %d %s" % (schedule["seed"], at, v.kind))
    if args.shrink_minutes > 0:
        small = shrink(failing, v.kind, args.shrink_minutes * 60)
        p = save(small, args.out, "shortest-%d.json" % schedule["seed"])
        log("shortest schedule found that still fails (%s), %d steps:\n  %s\nreplay: %s --replay %s" % (
            v.kind, len(small["steps"]), "\n  ".join(describe(s) for s in small["steps"]), sys.argv[0], p))
    return False


def selftests():
    """(invariant, schedule): each schedule breaks that invariant behind the daemon's back."""
    rng = random.Random(0)
    base = {"APP": {"js": {"flat": {"max_streams": 10}}, "limits": {"max_connections": 100}},
            "ORDERS": {"js": "enabled", "limits": None}, "AUDIT": {"js": "disabled", "limits": None}}

    def with_app(**limits):
        m = json.loads(json.dumps(base))
        m["APP"]["js"]["flat"].update({k: v for k, v in limits.items() if k.startswith("max_s")})
        m["APP"]["limits"].update({k: v for k, v in limits.items() if k == "max_connections"})
        return m

    def edit(m):
        return {"op": "edit", "method": "rename", "text": model.render(m, rng), "valid": True, "model": m}

    def schedule(name, steps, **extra):
        return dict({"seed": 0, "topology": "standalone", "runner": "plain", "mode": "operator", "selftest": name,
                     "initial": model.render(base, rng), "initial_model": base, "steps": steps}, **extra)

    no_audit = {n: d for n, d in base.items() if n != "AUDIT"}
    bad_text, _ = model.render_invalid(base, rng)
    return [
        ("applied", schedule("a limit changed behind the daemon, no resync", [
            {"op": "check"}, {"op": "sabotage_push", "account": "APP", "patch": {"limits": {"streams": 3}}},
            {"op": "check"}], settings={"resync_interval": "0"}, settle=8)),
        ("unmanaged", schedule("an account no longer listed changed", [
            edit(no_audit), {"op": "check"},
            {"op": "sabotage_push", "account": "AUDIT", "patch": {"limits": {"conn": 7}}}, {"op": "check"}])),
        ("iat", schedule("an older JWT pushed again", [
            {"op": "check"}, edit(with_app(max_streams=20)), {"op": "check"}, edit(base), {"op": "check"},
            {"op": "sabotage_repush_first", "account": "APP"}, {"op": "check"}])),
        ("one-key", schedule("a second account of the same name", [
            {"op": "check"}, {"op": "sabotage_copy_key", "account": "APP"}, {"op": "check"}])),
        ("journal", schedule("a change that no line reports", [
            {"op": "check"}, {"op": "sabotage_push", "account": "APP", "patch": {"limits": {"conn": 55}}},
            edit(with_app(max_connections=55)), {"op": "check"}], settings={"resync_interval": "0"})),
        ("applied", schedule("config mode: a fragment edited by hand, no resync", [
            {"op": "check"}, {"op": "sabotage_fragment", "account": "APP"}, {"op": "check"}],
            mode="config", settings={"resync_interval": "0"}, settle=8)),
        ("unmanaged", schedule("config mode: the fragment of an account no longer listed changed", [
            edit(no_audit), {"op": "check"}, {"op": "sabotage_fragment", "account": "AUDIT"}, {"op": "check"}],
            mode="config")),
        ("daemon", schedule("the daemon dies of SIGSEGV", [
            {"op": "check"}, {"op": "sabotage_kill_daemon"}, {"op": "check"}])),
        ("applied", schedule("cluster, no daemon (it refused a broken file at its restart), a limit changed", [
            {"op": "check"}, edit(with_app(max_streams=20)),
            {"op": "edit", "method": "rename", "text": bad_text, "valid": False, "model": None}, {"op": "restart"},
            {"op": "sabotage_push", "account": "APP", "patch": {"limits": {"streams": 3}}},
            {"op": "check"}], topology="cluster", settle=8)),
        ("applied", schedule("config mode, cluster, no daemon (it refused a broken file at its restart), "
                             "a fragment edited by hand", [
            {"op": "check"}, edit(with_app(max_streams=20)),
            {"op": "edit", "method": "rename", "text": bad_text, "valid": False, "model": None}, {"op": "restart"},
            {"op": "sabotage_fragment", "account": "APP"}, {"op": "check"}],
            mode="config", topology="cluster", settle=8)),
        ("files", schedule("a broken file the driver takes for a good one", [
            {"op": "edit", "method": "rename", "text": bad_text, "valid": True, "model": base}, {"op": "check"}])),
    ]


def run_selftests():
    """Each invariant must be reported when it is broken on purpose."""
    ok = True
    for kind, sched in selftests():
        try:
            v, at, _ = run_schedule(sched)
        except EnvironmentBroken as e:
            log("selftest %s: environment broke: %s" % (kind, e))
            return 2
        got = v.kind if v else None
        good = got == kind
        ok = ok and good
        log("selftest %-9s %s: %s -> %s" % (kind, "ok" if good else "FAILED", sched["selftest"],
                                           str(v).splitlines()[0][:200] if v else "nothing reported"))
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=None, help="seed of the schedule (default: from the clock, printed)")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--topology", choices=("standalone", "cluster", "mixed"), default="standalone")
    ap.add_argument("--runner", choices=("plain", "systemd", "mixed"), default="plain")
    ap.add_argument("--mode", choices=("operator", "config", "mixed"), default="operator")
    ap.add_argument("--minutes", type=float, default=0, help="soak: schedules back to back for this long")
    ap.add_argument("--replay", help="a schedule saved by an earlier run (JSON)")
    ap.add_argument("--shrink-minutes", type=float, default=15)
    ap.add_argument("--without", default="", help="comma-separated edit methods to leave out: rename, inplace, "
                    "truncate, symlink, configmap")
    ap.add_argument("--out", default=None, help="where failing schedules are saved (default: a temp folder)")
    ap.add_argument("--figures", help="write the figures as JSON here")
    ap.add_argument("--servers", default="", help="comma-separated nats-server binaries: each schedule draws one "
                    "(default: NATS_SERVER, else nats-server on PATH)")
    ap.add_argument("--selftest", action="store_true", help="break each invariant on purpose: each must be reported")
    args = ap.parse_args()
    why = harness.server_missing()
    if why:
        print("SKIP: %s" % why)
        return 77
    if args.selftest:
        return run_selftests()
    if args.runner in ("systemd", "mixed"):
        import sysns
        why = sysns.skip_reason()
        if why and args.runner == "systemd":
            print("SKIP: %s" % why)
            return 77
        if why:
            log("no systemd runs: %s" % why)
            args.runner = "plain"
    args.out = args.out or tempfile.mkdtemp(prefix="nats-accountd-converge.")
    features = tuple(f for f in args.without.split(",") if f)
    servers = [os.path.abspath(p) for p in args.servers.split(",") if p]
    total = {"schedules": 0, "steps": {}, "skipped": {}, "checks": 0, "converge": [], "races": 0,
             "violations": [], "broken": 0, "kinds": {}}
    t0 = time.monotonic()
    ok = True
    if args.replay:
        with open(args.replay) as f:
            schedule = json.load(f)
        ok = run_and_report(schedule, args, total)
    else:
        seed = args.seed if args.seed is not None else int(time.time()) % 1000000
        log("seed %d (replay with --seed %d --steps %d --topology %s --runner %s --mode %s%s)" % (
            seed, seed, args.steps, args.topology, args.runner, args.mode,
            " --without " + args.without if features else ""))
        rng = random.Random(seed)
        k = 0
        while True:
            sub = seed if not args.minutes else seed * 1000 + k
            topology = args.topology if args.topology != "mixed" else rng.choice(("standalone", "cluster"))
            runner = args.runner if args.runner != "mixed" else ("systemd" if rng.random() < 0.25 else "plain")
            mode = args.mode if args.mode != "mixed" else ("config" if rng.random() < 0.3 else "operator")
            if mode == "config" and runner == "systemd":
                runner = "plain"  # the systemd runner runs operator mode (config mode's unit: tests/system)
            schedule = model.generate(sub, args.steps, topology, runner, mode, WATCHDOG_SEC, REQUEST_TIMEOUT,
                                      features)
            if servers:
                schedule["server"] = rng.choice(servers)
            ok = run_and_report(schedule, args, total) and ok
            k += 1
            if not args.minutes or time.monotonic() - t0 > args.minutes * 60:
                break
    summary = summarize(total, time.monotonic() - t0)
    print(summary)
    if args.figures:
        with open(args.figures, "w") as f:
            json.dump(dict(total, wall=time.monotonic() - t0), f, indent=1)
    if total["broken"] and not total["schedules"]:
        return 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
