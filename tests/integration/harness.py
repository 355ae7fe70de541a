"""Sandboxes with a real nats-server for the integration tests (stdlib only).

A Sandbox is `nats-accountd init DIR --port -1` in a temporary folder plus the
nats-server(s) started from it. Everything listens on 127.0.0.1 with ports the
servers pick themselves (read back from their ports files); nothing ever
touches port 4222 or another address.

Every account JWT pushed while a sandbox runs (CLAIMS.UPDATE, seen by a
`nats-probe record` subscriber) and every .creds `user-creds` printed is
checked at cleanup by tests/jwtcheck, built on the NATS maintainers'
nats-io/jwt library: a wrong claim or a bad signature fails the test. Without
Go that check is skipped with one line on stderr.

Environment: NATS_ACCOUNTD and NATS_PROBE (set by meson), NATS_SERVER
(optional; default: nats-server on PATH), JWTCHECK (optional; default: built
by tools/go-tools.sh), KEEP_SANDBOX=1 keeps the folders.
"""

import base64
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
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


SKIP = 77  # meson's (and automake's) "skipped"
SRCDIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GO_TOOLS = os.path.join(SRCDIR, "tools", "go-tools.sh")
_go_programs = {}


def go_program(*args):
    """The path tools/go-tools.sh prints for args (`local tests/jwtcheck`, `path nsc`),
    or None without Go (exit 77; the reason goes to stderr once). $JWTCHECK, $NSC
    and $NATS_CLI name prebuilt ones. A failing build raises."""
    env_name = {"tests/jwtcheck": "JWTCHECK", "nsc": "NSC", "nats": "NATS_CLI"}.get(args[-1])
    if env_name and os.environ.get(env_name):
        return _exe(env_name)
    if args not in _go_programs:
        r = subprocess.run(["bash", GO_TOOLS] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=1800)
        if r.returncode == SKIP:
            sys.stderr.write(r.stderr)
            _go_programs[args] = None
        elif r.returncode != 0 or not r.stdout.strip():
            raise HarnessError("tools/go-tools.sh %s failed (%d):\n%s" % (" ".join(args), r.returncode, r.stderr))
        else:
            _go_programs[args] = r.stdout.strip().splitlines()[-1]
    return _go_programs[args]


def server_missing():
    """Why these tests cannot run here (no nats-server at all), or None.

    A NATS_SERVER that names no executable is a broken matrix entry, not a
    machine without a server: that fails (in Sandbox) rather than skip."""
    if os.environ.get("NATS_SERVER") or shutil.which("nats-server"):
        return None
    return "nats-server not found (set NATS_SERVER or put it on PATH)"


def main(needs=()):
    """unittest.main() of a test program; exit 77 (skipped) with the reason when
    there is no nats-server to test against, or no Go to build the programs in
    `needs` (names pinned in tools/go-pins.txt, e.g. "nsc")."""
    import unittest

    why = server_missing()
    for name in needs:
        if not why and not go_program("path", name):
            why = "%s needs Go to be built (tools/go-tools.sh)" % name
    if why:
        print("SKIP: %s" % why)
        sys.exit(SKIP)
    unittest.main(module="__main__")


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


def threads_stopped(pid, task_root="/proc"):
    """True once every thread of pid is stopped (or ended)."""
    try:
        tids = os.listdir("%s/%d/task" % (task_root, pid))
    except FileNotFoundError:
        raise HarnessError("process %d is gone" % pid)
    for tid in tids:
        try:
            with open("%s/%d/task/%s/stat" % (task_root, pid, tid)) as f:
                stat = f.read()
        except (FileNotFoundError, ProcessLookupError):
            continue  # a thread that ended meanwhile
        if stat[stat.rindex(")") + 2] not in "TtZX":
            return False
    return True


def sigstop(pid, timeout=10):
    """SIGSTOP pid and return once all its threads have stopped. kill()
    returns before that: each thread stops only when it next runs, and the
    one woken to start the stop may wait for a CPU while the others go on.
    A nats-server went on for up to 16 ms on a loaded host (2 ms idle), long
    enough to answer a whole pass the test meant it to miss (seen in CI)."""
    os.kill(pid, signal.SIGSTOP)
    poll(lambda: threads_stopped(pid), timeout, "process %d to stop on SIGSTOP" % pid, interval=0.0005)


def jwt_claims(jwt):
    """The payload of a JWT (the middle part), without checking the signature."""
    parts = jwt.strip().split(".")
    if len(parts) != 3:
        raise HarnessError("not a JWT: %d parts" % len(parts))
    body = parts[1] + "=" * (-len(parts[1]) % 4)
    return json.loads(base64.urlsafe_b64decode(body))


def state_seeds(state):
    """{public key: account name} of every seed in a state_dir, both layouts:
    <KEY>.seeds files (a batch of creates, "NAME KEY SEED CHECK" a line) and
    the <KEY>.nk files of earlier versions (first line "# nats-accountd: seed
    of account NAME"). Only complete files are there: both are renamed into
    place once written."""
    seeds = {}
    if not os.path.isdir(state):
        return seeds
    for f in os.listdir(state):
        path = os.path.join(state, f)
        if f.endswith(".seeds") and len(f) == 56 + 6:
            with open(path) as fh:
                for line in fh:
                    if line.startswith("#"):
                        continue
                    name, key, _seed, _check = line.split(" ")
                    seeds[key] = name
        elif f.endswith(".nk") and len(f) == 56 + 3:
            with open(path) as fh:
                first = fh.readline()
            seeds[f[:-3]] = first.rstrip("\n").rpartition(" ")[2]
    return seeds


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

    def again(self):
        """A NatsServer to start this one anew on the ports it has now (clients and
        routes configured with them find it again): its config with those ports
        written in, as <conf>.pinned. Call while it runs or after it stopped."""
        with open(self.conf) as f:
            text = f.read()
        for url in (self.url, self.cluster_url):
            if url:
                text = text.replace("listen: %s:-1" % LOOPBACK, "listen: %s:%s" % (LOOPBACK, url.rsplit(":", 1)[1]), 1)
        pinned = self.conf if self.conf.endswith(".pinned") else self.conf + ".pinned"
        with open(pinned, "w") as f:
            f.write(text)
        return NatsServer(self.binary, pinned, self.ports_dir, self.log_path)

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


class Recorder:
    """`nats-probe record`: every account JWT pushed while it runs, one per line in path."""

    SUBJECTS = ("$SYS.REQ.ACCOUNT.*.CLAIMS.UPDATE", "$SYS.REQ.CLAIMS.UPDATE")

    def __init__(self, probe, creds, url, path, timeout=15):
        self.proc = subprocess.Popen([probe, "record", creds, url, path] + list(self.SUBJECTS),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else b""
        if line.strip() != b"ready":
            self.proc.kill()
            _, err = self.proc.communicate(timeout=5)
            raise HarnessError("nats-probe record did not start: %s" % err.decode(errors="replace"))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate(timeout=5)
            raise HarnessError("nats-probe record ignored SIGTERM")
        if self.proc.returncode != 0:
            raise HarnessError("nats-probe record exited %d: %s" % (self.proc.returncode, err.decode(errors="replace")))


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
        self.operator_jwt = self.path("operator.jwt")
        self.recorder = None
        self.pushed = os.path.join(self.root, "pushed.jwts")
        self.creds_written = []
        self.planted = set()  # keys whose JWT a test forged on purpose (plant_jwt)

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
        self.start_recorder()
        return srv

    def start_recorder(self):
        """Record every push from now on (once per sandbox; a new one after a restart on another port)."""
        self.stop_recorder()
        self.recorder = Recorder(self.t["probe"], self.sys_creds, self.url, self.pushed)

    def stop_recorder(self):
        if self.recorder:
            rec, self.recorder = self.recorder, None
            rec.stop()

    def unrecorded(self):
        """A context in which pushes are not recorded for the oracle: for a test
        that pushes a bad JWT on purpose (and puts a good one back)."""
        import contextlib

        @contextlib.contextmanager
        def pause():
            self.stop_recorder()
            try:
                yield
            finally:
                self.start_recorder()

        return pause()

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
        """Stop everything and remove the folder; then raise when the oracle found a problem."""
        problems = None
        try:
            self.stop_recorder()
            problems = self.check_jwts()
        finally:
            if self.recorder:
                self.recorder.proc.kill()
            self.stop()
            if os.environ.get("KEEP_SANDBOX") or problems:
                print("sandbox kept in", self.root)
            else:
                shutil.rmtree(self.root, ignore_errors=True)
        if problems:
            raise HarnessError("nats-io/jwt (tests/jwtcheck) rejects what was pushed or printed:\n" + problems)

    def check_jwts(self):
        """tests/jwtcheck over the pushed JWTs, the resolvers' folders and the printed .creds:
        None when all is well (or without Go), else its report."""
        jwtcheck = go_program("local", "tests/jwtcheck")
        if not jwtcheck or not os.path.exists(self.operator_jwt):
            return None
        args = [jwtcheck, "-operator", self.operator_jwt]
        if os.path.exists(self.pushed):
            args += ["-jwts", self.pushed]
        for i, (d, _, _) in enumerate(os.walk(self.dir)):
            if os.path.basename(d) != "jwt":
                continue
            if self.planted:
                # What a test forged on purpose is no finding: the rest of the folder is.
                kept = os.path.join(self.root, "jwtcheck-dir-%d" % i)
                os.makedirs(kept, exist_ok=True)
                for name in os.listdir(d):
                    if name.split(".")[0] not in self.planted and os.path.isfile(os.path.join(d, name)):
                        shutil.copyfile(os.path.join(d, name), os.path.join(kept, name))
                d = kept
            args += ["-dir", d]
        for c in self.creds_written:
            args += ["-creds", c]
        r = run(args, timeout=120)
        return None if r.returncode == 0 else (r.stdout + r.stderr)

    def server_logs(self):
        return "\n".join("--- %s\n%s" % (s.conf, s.log_tail()) for s in self.servers)

    # commands --------------------------------------------------------------

    def accountd(self, *args, timeout=120):
        return run([self.t["accountd"], "-c", self.conf] + list(args), timeout=timeout)

    def probe(self, *args, timeout=60):
        # A server reloading its config (a test's or the daemon's reload) may
        # close a connection during its handshake ("Expected 'PONG', got ''"):
        # that connection is made again, as a client library would.
        for _ in range(5):
            r = run([self.t["probe"]] + list(args), timeout=timeout)
            if r.returncode == 0 or "cannot connect" not in r.stderr or "Expected 'PONG', got ''" not in r.stderr:
                return r
            time.sleep(0.1)
        return r

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
        path = self.write("%s-%s.creds" % (account, user), r.stdout, 0o600)
        self.creds_written.append(path)
        return path

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
        """The JWT the (first) server's resolver holds for key, or None when it has none:
        an empty reply (nats-server >= 2.9.17) or none at all (2.9.10)."""
        r = self.request(self.sys_creds, "$SYS.REQ.ACCOUNT.%s.CLAIMS.LOOKUP" % key, "", 1500)
        if r.returncode == 1:
            return None
        if r.returncode != 0:
            raise HarnessError("CLAIMS.LOOKUP %s failed (%d): %s" % (key, r.returncode, r.stderr))
        return r.stdout.strip() or None

    def delete_accounts(self, *keys):
        """CLAIMS.DELETE of these accounts' JWTs, as nsc would send it (needs allow_delete)."""
        r = self.probe("sign-delete", self.signer, *keys)
        if r.returncode != 0:
            raise HarnessError("sign-delete failed (%d): %s" % (r.returncode, r.stderr))
        replies = self.gather_json("$SYS.REQ.CLAIMS.DELETE", len(self.servers), r.stdout.strip())
        for rep in replies:
            if (rep.get("data") or {}).get("code") != 200:
                raise HarnessError("CLAIMS.DELETE refused: %s" % rep)
        return replies

    def restart_servers_with(self, old=None, new=None, while_stopped=None):
        """Stop the server, replace `old` (once) by `new` in nats-server.conf, call
        while_stopped(), and start it anew (on another port)."""
        conf = self.read("nats-server.conf")
        if old is not None and conf.count(old) != 1:
            raise HarnessError("%r appears %d times in nats-server.conf" % (old, conf.count(old)))
        self.stop()
        self.servers = []
        if old is not None:
            self.write("nats-server.conf", conf.replace(old, new))
        if while_stopped:
            while_stopped()
        return self.start_server()

    def server_version(self):
        """(major, minor, patch) of the server, from VARZ."""
        v = self.gather_json("$SYS.REQ.SERVER.PING.VARZ", 1)[0]["data"]["version"]
        return tuple(int(x) for x in re.match(r"v?(\d+)\.(\d+)\.(\d+)", v).groups())

    def plant_jwt(self, key, jwt, n_servers=1):
        """push_jwt of a JWT the test forged on purpose (another signer, say): neither the
        push nor what the resolvers then hold for key is held against nats-accountd by
        the jwtcheck oracle."""
        self.planted.add(key)
        with self.unrecorded():
            return self.push_jwt(key, jwt, n_servers)

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
        # A name of its own: a server of another sandbox still retrying a
        # route to a port one of these servers now listens on (its peer was
        # killed, as the convergence driver does) is refused, not merged in.
        self.cluster_name = "C-" + os.path.basename(self.root).rsplit(".", 1)[-1]
        for i, (node, text) in enumerate(self.node_confs, start=1):
            conf = os.path.join(node, "nats-server.conf")
            with open(conf, "w") as f:
                f.write(text)
                f.write("cluster {\n  name: %s\n  listen: %s:-1\n  routes: [%s]\n}\n" % (self.cluster_name, LOOPBACK,
                                                                                   ", ".join(routes)))
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
        self.start_recorder()

        def meta_leader():
            try:
                replies = self.gather_json("$SYS.REQ.SERVER.PING.JSZ", self.size, timeout_ms=1000)
            except HarnessError:
                return None
            leaders = {((r.get("data") or {}).get("meta_cluster") or {}).get("leader") for r in replies}
            return len(leaders) == 1 and None not in leaders and "" not in leaders

        # 60 s: on a loaded CI host 2.10.23 once took more than 30 (its
        # elections time out after seconds, and each may need more than one).
        poll(meta_leader, 60, "a JetStream meta leader all %d servers agree on" % self.size, interval=0.2)

    def cleanup(self):
        super().cleanup()
        if getattr(self, "_held", None):
            self._held.close()


class Holder:
    """A client of an account that stays connected (nats-probe hold) until close()."""

    def __init__(self, sb, creds, subjects=(), url=None):
        self.proc = subprocess.Popen(
            [sb.t["probe"], "hold", creds, url or sb.url] + list(subjects),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.first = self.proc.stdout.readline().strip()  # "connected", or "" when refused
        self.connected = self.first == "connected"
        if not self.connected:
            self.proc.wait(timeout=30)
            self.error = self.proc.stderr.read()

    def closed_by_server(self, timeout):
        """The server's reason when it closed the connection within timeout seconds, else None."""
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return None
        line = self.proc.stdout.readline().strip()
        return line[len("closed: "):] if line.startswith("closed: ") else None

    def close(self):
        self.proc.stdin.close()  # ends hold
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for f in (self.proc.stdout, self.proc.stderr):
            f.close()


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
