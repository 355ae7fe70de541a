"""Config-mode sandboxes for the integration tests (stdlib only).

A ConfigSandbox is `nats-accountd init DIR --mode config --port -1` in a
temporary folder plus the nats-server(s) started from it: accounts defined in
DIR/nats-server.conf, each example account's block including
accounts.d/<ACCOUNT>.conf, an nkey user of SYS for the daemon (accountd.nk)
and one per example account (<ACCOUNT>-user.nk). Everything listens on
127.0.0.1 with ports the servers pick themselves.
"""

import json
import os
import re
import signal
import tempfile
import threading

import harness
from harness import LOOPBACK, HarnessError, NatsServer, run

MiB = 1024 * 1024


def server_version(binary):
    """(major, minor, patch) of a nats-server binary."""
    r = run([binary, "--version"], timeout=20)
    m = re.search(r"v?(\d+)\.(\d+)\.(\d+)", r.stdout + r.stderr)
    if not m:
        raise HarnessError("cannot tell the version of %s: %r" % (binary, r.stdout + r.stderr))
    return tuple(int(x) for x in m.groups())


class ConfigSandbox(harness.Sandbox):
    """init --mode config output and helpers around it (the operator-mode Sandbox's file and command helpers)."""

    def __init__(self, label="config"):  # noqa: super().__init__ runs the operator-mode init
        self.t = harness.tools()
        self.root = tempfile.mkdtemp(prefix="nats-accountd-it-%s." % label)
        self.dir = os.path.join(self.root, "sb")
        self.servers = []
        r = run([self.t["accountd"], "init", self.dir, "--mode", "config", "--port", "-1"])
        if r.returncode != 0:
            raise HarnessError("init --mode config failed (%d): %s%s" % (r.returncode, r.stdout, r.stderr))
        conf = self.read("nats-server.conf")
        if "listen: %s:-1" % LOOPBACK not in conf or "ports_file_dir" not in conf:
            raise HarnessError("init --port -1 did not write a loopback listen with a ports_file_dir:\n" + conf)
        self.conf = self.path("nats-accountd.conf")
        self.sys_creds = self.path("accountd.nk")
        self.accounts_file = self.path("accounts.yaml")
        self.version = server_version(self.t["server"])
        self.log_path = os.path.join(self.root, "server.log")
        # No account JWTs in config mode: nothing for the jwtcheck oracle to record or read.
        self.operator_jwt = self.path("operator.jwt")
        self.recorder = None
        self.pushed = os.path.join(self.root, "pushed.jwts")
        self.creds_written = []

    def start_recorder(self):
        pass

    # An embedded server is not one of self.servers: its URL is set here.
    external_url = None

    @property
    def url(self):
        return self.external_url or self.servers[0].url

    @property
    def has_reload_request(self):
        return self.version >= (2, 10, 0)

    def user(self, account):
        return self.path("%s-user.nk" % account)

    def fragment(self, account):
        return self.read(os.path.join("accounts.d", "%s.conf" % account))

    def server_log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def start_server(self, conf=None):
        srv = NatsServer(self.t["server"], conf or self.path("nats-server.conf"), self.dir, self.log_path)
        self.servers.append(srv)
        srv.start()
        self.set_setting("servers", srv.url)
        self.wait_system_api(1)
        return srv

    def edit_server_conf(self, old, new, name="nats-server.conf"):
        text = self.read(name)
        if text.count(old) != 1:
            raise HarnessError("%r is not once in %s:\n%s" % (old, name, text))
        self.write(name, text.replace(old, new))

    def jsz(self, account, url=None):
        """$SYS.REQ.ACCOUNT.<name>.JSZ of the server at url (default: the first)."""
        return self.request_json(self.sys_creds, "$SYS.REQ.ACCOUNT.%s.JSZ" % account, url=url)

    def reserved(self, account, url=None):
        d = self.jsz(account, url).get("data")
        return (d["reserved_memory"], d["reserved_storage"]) if d else None

    def js_info_of(self, account, url=None):
        """$JS.API.INFO as a user of the account: a dict, or None when JetStream is off for it."""
        r = self.request(self.user(account), "$JS.API.INFO", timeout_ms=1000, url=url)
        if r.returncode != 0:
            return None
        doc = json.loads(r.stdout)
        return None if "error" in doc else doc


class ExternalReloader:
    """What nats-accountd-reload.path does, in a thread: when <fragments_dir>/.reload changes, SIGHUP the server."""

    def __init__(self, marker, pid):
        self.marker = marker
        self.pid = pid
        self.reloads = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _stamp(self):
        try:
            st = os.stat(self.marker)
            return (st.st_ino, st.st_mtime_ns)
        except FileNotFoundError:
            return None

    def _run(self):
        last = self._stamp()
        while not self._stop.wait(0.05):
            now = self._stamp()
            if now != last and now is not None:
                last = now
                os.kill(self.pid, signal.SIGHUP)
                self.reloads += 1

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)


class ConfigCluster(ConfigSandbox):
    """Three servers c1..c3 on one host, sharing the sandbox's accounts.d: node i's config lives in
    DIR/c<i>/nats-server.conf and includes ../accounts.d/<ACCOUNT>.conf."""

    def __init__(self, size=3):
        super().__init__("config-cluster")
        self.size = size
        base = self.read("nats-server.conf")
        self.node_confs = []
        for i in range(1, size + 1):
            node = self.path("c%d" % i)
            os.makedirs(os.path.join(node, "jetstream"), mode=0o700)
            text = base
            for pattern, repl in (
                (r"(?m)^server_name:.*$", "server_name: c%d" % i),
                (r'(?m)^ports_file_dir:.*$', 'ports_file_dir: "%s"' % node),
                (r'(?m)^pid_file:.*$', 'pid_file: "%s"' % os.path.join(node, "nats-server.pid")),
                (r'(?m)^(\s*store_dir:\s*)".*"$', r'\g<1>"%s"' % os.path.join(node, "jetstream")),
            ):
                text, n = re.subn(pattern, repl, text)
                if n != 1:
                    raise HarnessError("cannot derive c%d's config: %r matched %d times" % (i, pattern, n))
            text = text.replace('include "accounts.d/', 'include "../accounts.d/')
            self.node_confs.append((node, text))
        self.set_setting("server_config", ", ".join(os.path.join(n, "nats-server.conf") for n, _ in self.node_confs))

    # Node configs are written and started exactly as operator mode's cluster does.
    start_cluster = harness.Cluster.start_cluster

    def restart(self, i):
        """Start node i (1-based) again after a stop, on a port it picks."""
        node, _ = self.node_confs[i - 1]
        old = self.servers[i - 1]
        srv = NatsServer(self.t["server"], old.conf, node, old.log_path)
        for f in os.listdir(node):
            if f.endswith(".ports"):
                os.unlink(os.path.join(node, f))
        srv.start()
        self.servers[i - 1] = srv
        return srv

    def cleanup(self):
        super().cleanup()
        if getattr(self, "_held", None):
            self._held.close()
