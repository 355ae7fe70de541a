"""Sandboxes with a real nats-server for the integration tests (stdlib only).

A Sandbox is `nats-accountd init DIR --port -1` in a temporary folder plus the
nats-server(s) started from it. Everything listens on 127.0.0.1 with ports the
servers pick themselves (read back from their ports files); nothing ever
touches port 4222 or another address.

Environment: NATS_ACCOUNTD and NATS_PROBE (set by meson), NATS_SERVER
(optional; default: nats-server on PATH), KEEP_SANDBOX=1 keeps the folders.
"""

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

LOOPBACK = "127.0.0.1"
FORBIDDEN_PORT = 4222


class HarnessError(Exception):
    pass


def _exe(env_name, default=None):
    path = os.environ.get(env_name) or (shutil.which(default) if default else None)
    if not path or not os.access(path, os.X_OK):
        raise HarnessError(
            "%s not found (set %s%s)" % (default or env_name, env_name, " or put it on PATH" if default else "")
        )
    return path


def tools():
    """Paths of nats-accountd, nats-probe and nats-server; raises when one is missing."""
    return {
        "accountd": _exe("NATS_ACCOUNTD"),
        "probe": _exe("NATS_PROBE"),
        "server": _exe("NATS_SERVER", "nats-server"),
    }


def run(args, timeout=60, input_text=None):
    """Run a command; returns CompletedProcess with text stdout/stderr."""
    try:
        return subprocess.run(
            [str(a) for a in args],
            input=input_text,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:
        raise HarnessError("%s did not finish within %ss" % (" ".join(map(str, args)), timeout)) from e


def poll(fn, timeout, what, interval=0.05):
    """Call fn until it returns something truthy, at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise HarnessError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def jwt_claims(jwt):
    """The payload of a JWT (the middle part), without checking the signature."""
    parts = jwt.strip().split(".")
    if len(parts) != 3:
        raise HarnessError("not a JWT: %d parts" % len(parts))
    body = parts[1] + "=" * (-len(parts[1]) % 4)
    return json.loads(base64.urlsafe_b64decode(body))


def _check_url(url):
    m = re.fullmatch(r"nats(?:-route)?://([^:/]+):(\d+)", url)
    if not m or m.group(1) != LOOPBACK or int(m.group(2)) == FORBIDDEN_PORT:
        raise HarnessError("refusing server URL %r: only %s with a picked port" % (url, LOOPBACK))
    return url


class NatsServer:
    """One nats-server process; its ports come from <ports_dir>/nats-server_<pid>.ports."""

    def __init__(self, binary, conf, ports_dir, log_path):
        self.binary = binary
        self.conf = conf
        self.ports_dir = ports_dir
        self.log_path = log_path
        self.proc = None
        self.url = None
        self.cluster_url = None

    def start(self, timeout=15):
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [self.binary, "-c", self.conf],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        ports_file = os.path.join(self.ports_dir, "nats-server_%d.ports" % self.proc.pid)

        def ports():
            if self.proc.poll() is not None:
                raise HarnessError("nats-server -c %s exited with %s:\n%s" % (self.conf, self.proc.returncode, self.log_tail()))
            try:
                with open(ports_file) as f:
                    doc = json.load(f)
            except (OSError, ValueError):
                return None
            return doc if doc.get("nats") else None

        doc = poll(ports, timeout, "the ports file of nats-server -c %s" % self.conf)
        self.url = _check_url(doc["nats"][0])
        if doc.get("cluster"):
            self.cluster_url = _check_url(doc["cluster"][0])
        return self

    def log_tail(self, n=40):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace=5):
        """SIGTERM by PID, then SIGKILL if it lingers."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=grace)
            except ProcessLookupError:
                pass
        self._log.close()


class Sandbox:
    """`nats-accountd init` output in a temporary folder, and helpers around it."""

    def __init__(self, label="sandbox"):
        self.t = tools()
        self.root = tempfile.mkdtemp(prefix="nats-accountd-it-%s." % label)
        self.dir = os.path.join(self.root, "sb")
        self.servers = []
        r = run([self.t["accountd"], "init", self.dir, "--port", "-1"])
        if r.returncode != 0:
            raise HarnessError("init failed (%d): %s%s" % (r.returncode, r.stdout, r.stderr))
        conf = self.read("nats-server.conf")
        if "listen: %s:-1" % LOOPBACK not in conf or "ports_file_dir" not in conf:
            raise HarnessError("init --port -1 did not write a loopback listen with a ports_file_dir:\n" + conf)
        self.conf = self.path("nats-accountd.conf")
        self.sys_creds = self.path("sys.creds")
        self.signer = self.path("operator-signer.nk")
        self.accounts_file = self.path("accounts.yaml")

    # files -----------------------------------------------------------------

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def read(self, name):
        with open(self.path(name)) as f:
            return f.read()

    def write(self, name, text, mode=0o644):
        p = self.path(name)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(p, mode)
        return p

    def write_accounts(self, text):
        self.write("accounts.yaml", text)

    def set_setting(self, key, value):
        """Rewrite `key = ...` in nats-accountd.conf (the key must be there once)."""
        text = self.read("nats-accountd.conf")
        new, n = re.subn(r"(?m)^%s\s*=.*$" % re.escape(key), "%s = %s" % (key, value), text)
        if n != 1:
            raise HarnessError("%s appears %d times in nats-accountd.conf" % (key, n))
        self.write("nats-accountd.conf", new)

    # servers ---------------------------------------------------------------

    def start_server(self):
        srv = NatsServer(self.t["server"], self.path("nats-server.conf"), self.dir, os.path.join(self.root, "server.log"))
        self.servers.append(srv)
        srv.start()
        self.set_setting("servers", srv.url)
        self.wait_system_api(1)
        return srv

    @property
    def url(self):
        return self.servers[0].url

    def wait_system_api(self, n_servers, timeout=20):
        """Until PING through the system account answers from n_servers servers."""

        def ready():
            r = self.probe("gather", self.sys_creds, self.url, "$SYS.REQ.SERVER.PING", "", 1000, n_servers)
            return r.returncode == 0 and len(r.stdout.splitlines()) >= n_servers

        poll(ready, timeout, "%d server(s) answering $SYS.REQ.SERVER.PING" % n_servers, interval=0.1)

    def stop(self):
        for s in reversed(self.servers):
            s.stop()

    def cleanup(self):
        self.stop()
        if os.environ.get("KEEP_SANDBOX"):
            print("sandbox kept in", self.root)
        else:
            shutil.rmtree(self.root, ignore_errors=True)

    def server_logs(self):
        return "\n".join("--- %s\n%s" % (s.conf, s.log_tail()) for s in self.servers)

    # commands --------------------------------------------------------------

    def accountd(self, *args, timeout=120):
        return run([self.t["accountd"], "-c", self.conf] + list(args), timeout=timeout)

    def probe(self, *args, timeout=60):
        return run([self.t["probe"]] + list(args), timeout=timeout)

    def plan_json(self):
        r = self.accountd("plan", "--json")
        try:
            return r, json.loads(r.stdout)
        except ValueError as e:
            raise HarnessError("plan --json printed no JSON (exit %d): %r %r" % (r.returncode, r.stdout, r.stderr)) from e

    def account_keys(self):
        """name -> key from plan --json (only accounts that exist)."""
        _, doc = self.plan_json()
        return {a["name"]: a["key"] for a in doc["accounts"] if a.get("key")}

    def user_creds(self, account, user="tester"):
        r = self.accountd("user-creds", account, user)
        if r.returncode != 0:
            raise HarnessError("user-creds %s %s failed (%d): %s" % (account, user, r.returncode, r.stderr))
        return self.write("%s-%s.creds" % (account, user), r.stdout, 0o600)

    def request(self, creds, subject, payload="", timeout_ms=2000, url=None):
        return self.probe("request", creds, url or self.url, subject, payload, timeout_ms)

    def request_json(self, creds, subject, payload="", timeout_ms=2000, url=None):
        r = self.request(creds, subject, payload, timeout_ms, url)
        if r.returncode != 0:
            raise HarnessError("request %s failed (%d): %s" % (subject, r.returncode, r.stderr))
        return json.loads(r.stdout)

    def gather_json(self, subject, count, payload="", timeout_ms=3000):
        r = self.probe("gather", self.sys_creds, self.url, subject, payload, timeout_ms, count)
        if r.returncode != 0:
            raise HarnessError("gather %s: %d replies of %d: %s" % (subject, len(r.stdout.splitlines()), count, r.stderr))
        return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]

    def lookup_jwt(self, key):
        """The JWT the (first) server's resolver holds for key, or None when it has none."""
        r = self.request(self.sys_creds, "$SYS.REQ.ACCOUNT.%s.CLAIMS.LOOKUP" % key, "", 1500)
        if r.returncode == 1:
            return None
        if r.returncode != 0:
            raise HarnessError("CLAIMS.LOOKUP %s failed (%d): %s" % (key, r.returncode, r.stderr))
        return r.stdout.strip()

    def push_jwt(self, key, jwt, n_servers=1):
        """CLAIMS.UPDATE as the system user; every server must answer "jwt updated"."""
        replies = self.gather_json("$SYS.REQ.ACCOUNT.%s.CLAIMS.UPDATE" % key, n_servers, jwt)
        for rep in replies:
            if (rep.get("data") or {}).get("code") != 200:
                raise HarnessError("CLAIMS.UPDATE %s refused: %s" % (key, rep))
        return replies

    def js_info(self, creds, url=None):
        return self.request_json(creds, "$JS.API.INFO", url=url)


def js_limits(info, tier=None):
    """The limits object of $JS.API.INFO, top-level or of one tier."""
    if tier is None:
        return info.get("limits") or {}
    return ((info.get("tiers") or {}).get(tier) or {}).get("limits") or {}


def node_config(sandbox, base, name):
    """init's server config for one more server `name`, with a folder of its own
    (ports file, JetStream store, resolver); returns (folder, config text)."""
    node = sandbox.path(name)
    os.makedirs(os.path.join(node, "jetstream"), mode=0o700)
    os.makedirs(os.path.join(node, "jwt"), mode=0o700)
    text = base
    for pattern, repl in (
        (r"(?m)^server_name:.*$", "server_name: %s" % name),
        (r'(?m)^ports_file_dir:.*$', 'ports_file_dir: "%s"' % node),
        (r'(?m)^(\s*store_dir:\s*)".*"$', r'\g<1>"%s"' % os.path.join(node, "jetstream")),
        (r'(?ms)^(resolver\s*\{.*?^\s*dir:\s*)".*?"$', r'\g<1>"%s"' % os.path.join(node, "jwt")),
    ):
        text, n = re.subn(pattern, repl, text)
        if n != 1:
            raise HarnessError("cannot derive %s's config: %r matched %d times in\n%s" % (name, pattern, n, base))
    return node, text


class Cluster(Sandbox):
    """Three servers c1..c3 on loopback derived from init's server config."""

    def __init__(self, size=3):
        super().__init__("cluster")
        self.size = size
        base = self.read("nats-server.conf")
        self.node_confs = []
        for i in range(1, size + 1):
            self.node_confs.append(node_config(self, base, "c%d" % i))

    def start_cluster(self):
        # JetStream refuses to start a clustered server without configured routes,
        # and c1's peers' ports are not known before they start: c1 gets a route
        # to a loopback port held bound but never listening (refused at once) and
        # learns c2 and c3 when they connect to it.
        self._held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._held.bind((LOOPBACK, 0))
        routes = ["nats-route://%s:%d" % (LOOPBACK, self._held.getsockname()[1])]
        for i, (node, text) in enumerate(self.node_confs, start=1):
            conf = os.path.join(node, "nats-server.conf")
            with open(conf, "w") as f:
                f.write(text)
                f.write("cluster {\n  name: C\n  listen: %s:-1\n  routes: [%s]\n}\n" % (LOOPBACK, ", ".join(routes)))
            srv = NatsServer(self.t["server"], conf, node, os.path.join(self.root, "c%d.log" % i))
            self.servers.append(srv)
            srv.start()
            if i == 1:
                if not srv.cluster_url:
                    raise HarnessError("c1 reports no cluster port in its ports file")
                routes = [srv.cluster_url.replace("nats://", "nats-route://", 1)]
            elif i < self.size:
                routes.append(srv.cluster_url.replace("nats://", "nats-route://", 1))
        self.set_setting("servers", ", ".join(s.url for s in self.servers))
        self.wait_system_api(self.size, timeout=30)

        def meta_leader():
            try:
                replies = self.gather_json("$SYS.REQ.SERVER.PING.JSZ", self.size, timeout_ms=1000)
            except HarnessError:
                return None
            leaders = {((r.get("data") or {}).get("meta_cluster") or {}).get("leader") for r in replies}
            return len(leaders) == 1 and None not in leaders and "" not in leaders

        poll(meta_leader, 30, "a JetStream meta leader all %d servers agree on" % self.size, interval=0.2)

    def cleanup(self):
        super().cleanup()
        if getattr(self, "_held", None):
            self._held.close()


class DelayProxy:
    """A TCP relay on 127.0.0.1 (a port the kernel picks) that delays every byte by
    `delay` seconds each way: a slow link, such as a gateway between sites. Its
    target may be set after it listens; connections wait for it."""

    def __init__(self, delay):
        self.delay = delay
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((LOOPBACK, 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        if self.port == FORBIDDEN_PORT:
            raise HarnessError("the kernel picked port %d for a proxy" % FORBIDDEN_PORT)
        self.target = None
        self.target_set = threading.Event()
        self.closed = False
        self.sockets = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self):
        return "nats://%s:%d" % (LOOPBACK, self.port)

    def set_target(self, port):
        self.target = (LOOPBACK, port)
        self.target_set.set()

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client):
        self.target_set.wait()
        try:
            server = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        server.settimeout(None)
        self.sockets += [client, server]
        for src, dst in ((client, server), (server, client)):
            chunks = []
            cond = threading.Condition()
            threading.Thread(target=self._read, args=(src, chunks, cond), daemon=True).start()
            threading.Thread(target=self._write, args=(dst, chunks, cond), daemon=True).start()

    def _read(self, src, chunks, cond):
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            with cond:
                chunks.append((time.monotonic() + self.delay, data))
                cond.notify()
            if not data:
                return

    def _write(self, dst, chunks, cond):
        while True:
            with cond:
                while not chunks:
                    cond.wait()
                due, data = chunks.pop(0)
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            try:
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(data)
            except OSError:
                return

    def close(self):
        self.closed = True
        for s in [self.listener] + self.sockets:
            try:
                s.close()
            except OSError:
                pass


class SuperCluster(Sandbox):
    """Two clusters, A (a1, a2) and B (b1, b2), joined by gateways on 127.0.0.1.
    Each gateway connection goes through a DelayProxy, so what crosses from one
    cluster to the other arrives `delay` seconds late (a round trip 2 x delay).
    JetStream runs in A only: clusters started one after the other would each
    bootstrap a metadata group of their own, which never merge."""

    def __init__(self, per_cluster=2, delay=0.25):
        super().__init__("supercluster")
        self.delay = delay
        base = self.read("nats-server.conf")
        # The proxy to each cluster's gateway listens before any server starts:
        # the other cluster's servers are configured with its port.
        self.proxies = {"A": DelayProxy(delay), "B": DelayProxy(delay)}
        self.nodes = []  # (cluster, name, folder, config text)
        for cluster in ("A", "B"):
            other = "B" if cluster == "A" else "A"
            for i in range(1, per_cluster + 1):
                name = "%s%d" % (cluster.lower(), i)
                node, text = node_config(self, base, name)
                if cluster == "B":
                    text, n = re.subn(r"(?ms)^jetstream\s*\{.*?^\}\n", "", text)
                    if n != 1:
                        raise HarnessError("cannot take JetStream out of %s's config" % name)
                text += "gateway {\n  name: %s\n  listen: %s:-1\n  gateways: [ { name: %s, urls: [\"%s\"] } ]\n}\n" % (
                    cluster, LOOPBACK, other, self.proxies[other].url)
                self.nodes.append((cluster, name, node, text))
        self._held = []

    def start_supercluster(self):
        by_cluster = {}
        for cluster, name, node, text in self.nodes:
            by_cluster.setdefault(cluster, []).append((name, node, text))
        for cluster, members in by_cluster.items():
            # As Cluster does: the first server routes to a held, never listening port.
            held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.bind((LOOPBACK, 0))
            self._held.append(held)
            routes = ["nats-route://%s:%d" % (LOOPBACK, held.getsockname()[1])]
            for i, (name, node, text) in enumerate(members):
                conf = os.path.join(node, "nats-server.conf")
                with open(conf, "w") as f:
                    f.write(text)
                    f.write("cluster {\n  name: %s\n  listen: %s:-1\n  routes: [%s]\n}\n" % (cluster, LOOPBACK, ", ".join(routes)))
                srv = NatsServer(self.t["server"], conf, node, os.path.join(self.root, "%s.log" % name))
                srv.name = name
                self.servers.append(srv)
                srv.start()
                if not srv.cluster_url:
                    raise HarnessError("%s reports no cluster port in its ports file" % name)
                if i == 0:
                    routes = [srv.cluster_url.replace("nats://", "nats-route://", 1)]
                else:
                    routes.append(srv.cluster_url.replace("nats://", "nats-route://", 1))
            # Each proxy leads to the first server's gateway port, which VARZ tells.
            first = self.servers[-len(members)]
            doc = self.request_json(self.sys_creds, "$SYS.REQ.SERVER.PING.VARZ", url=first.url)
            gw_port = ((doc.get("data") or {}).get("gateway") or {}).get("port")
            if not gw_port or gw_port <= 0:
                raise HarnessError("%s's VARZ tells no gateway port: %s" % (first.conf, doc.get("data", {}).get("gateway")))
            self.proxies[cluster].set_target(gw_port)
        self.set_setting("servers", self.servers[0].url)
        self.wait_system_api(len(self.servers), timeout=60)

        in_a = len(by_cluster["A"])

        def meta_leader():
            try:
                replies = self.gather_json("$SYS.REQ.SERVER.PING.JSZ", in_a, timeout_ms=3000)
            except HarnessError:
                return None
            leaders = {((r.get("data") or {}).get("meta_cluster") or {}).get("leader") for r in replies
                       if r["server"].get("cluster") == "A"}
            return len(leaders) == 1 and None not in leaders and "" not in leaders

        poll(meta_leader, 60, "a JetStream meta leader the servers of cluster A agree on", interval=0.5)

    def cleanup(self):
        super().cleanup()
        for p in self.proxies.values():
            p.close()
        for h in self._held:
            h.close()
