"""A real systemd booted as PID 1 of a private PID + mount namespace (stdlib only).

    unshare --pid --fork --mount --mount-proc --propagation private bash -c \
        'mount -t tmpfs tmpfs /tmp && mount -t tmpfs tmpfs /run && \
         mount -t tmpfs tmpfs /var && mount --make-rshared / && ... && \
         exec /lib/systemd/systemd --system'

What the "..." adds is only safety for the machine and the plumbing systemd
expects from a container manager:
  - fresh tmpfs on /tmp, /run and /var: systemd-tmpfiles empties /tmp at boot,
    and the machine's journal (/var/log/journal), /var/lib (StateDirectory=,
    DynamicUser= state, postgres data) and /var/tmp (PrivateTmp=) are never
    written; journald is made volatile;
  - /etc as an overlay whose upper layer is on that /run: tests make folders
    such as /etc/nats-accountd, and nothing written to /etc reaches the machine;
  - `mount --make-rshared /` inside the (already private) namespace: systemd
    detects a container and does not do it itself, and without shared
    propagation LoadCredential= silently hands the service an empty
    $CREDENTIALS_DIRECTORY. The machine's mounts are not peers of these;
  - runtime masks (in the fresh /run) of units that would touch the machine or
    the ports: Debian's nats-server (port 4222), postgresql, sysctl, binfmt,
    sysusers; default.target = basic.target.
The unshare process starts in a cgroup of its own (name=systemd and cgroup2),
removed at the end; `exclusive()` is a lock in the machine's /tmp that lets one
booted systemd run at a time.

`Namespace(consoledir, own_root=True)` boots in a root of its own instead, for
tests that install packages (apt, dpkg) and so write /usr, /etc and /var:
  - the new root is an overlay whose lower layer is the machine's / (so dpkg's
    database, apt and the installed libraries are there) and whose upper layer
    is a tmpfs of the namespace; /usr, /etc, /var and /opt get the same kind of
    overlay when they are mounts of their own; every write lands in the tmpfs;
  - /dev and /sys are bound from the machine as in the default mode, /proc is
    the namespace's own; fresh tmpfs on /tmp, /run and /var/log/journal (the
    machine's persistent journal is neither read nor written);
  - `pivot_root` into it (the old root is detached), then the same
    `mount --make-rshared /`, /run set-up and masks, and systemd.

Files the units must see are put INSIDE the namespace, on its own /run
(`Namespace.install`, `Namespace.path`), wherever the clone and the build
folder are: a unit with ProtectHome= cannot see /root or /home, and the
namespace's /tmp is not the machine's. Nothing is left on the machine.
"""

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time

SKIP = 77
SYSTEMD = "/lib/systemd/systemd"
LOCK_FILE = "/tmp/nats-accountd-systemd-test.lock"  # the machine's /tmp: one booted systemd at a time
# How long to wait for another booted systemd test (another build's suite) to finish.
LOCK_WAIT_SEC = int(os.environ.get("SYSTEST_LOCK_WAIT", "1800"))
# Where files for the units live inside the namespace (its own tmpfs).
INSIDE_ROOT = "/run/nats-accountd-systest"

# With own_root: folders that get an overlay of their own when they are separate
# mounts on the machine (an overlay of / does not reach into submounts).
OWN_ROOT_SUBMOUNTS = ("/usr", "/etc", "/var", "/opt")

NS_UNITS_MASKED = [
    "nats-server.service",
    "postgresql.service",
    "systemd-sysctl.service",
    "systemd-binfmt.service",
    "systemd-sysusers.service",
]


def log(msg):
    sys.stderr.write("# %s\n" % msg)
    sys.stderr.flush()


class SetupError(Exception):
    pass


def poll(fn, timeout, what, interval=0.1):
    """Call fn until it returns something truthy, at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def now_usec():
    return time.time_ns() // 1000


def skip_reason():
    """Why a systemd cannot be booted here (exit 77), or None."""
    if os.geteuid() != 0:
        return "not root: cannot boot systemd in a namespace"
    if not os.access(SYSTEMD, os.X_OK):
        return "%s not found" % SYSTEMD
    for tool in ("unshare", "nsenter"):
        if not shutil.which(tool):
            return "%s not found" % tool
    return None


@contextlib.contextmanager
def exclusive():
    """Hold the machine-wide lock of booted systemd tests (waits up to LOCK_WAIT_SEC)."""
    lock = open(LOCK_FILE, "a")
    deadline = time.monotonic() + LOCK_WAIT_SEC
    said = False
    try:
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise SetupError("another systemd system test held %s for %ds" % (LOCK_FILE, LOCK_WAIT_SEC))
                if not said:
                    log("waiting for another systemd system test (%s)" % LOCK_FILE)
                    said = True
                time.sleep(0.5)
        yield
    finally:
        lock.close()


def cgroup_roots():
    """Where a booted systemd keeps its tree: name=systemd and cgroup2 (hybrid), or cgroup2 alone."""
    roots = [p for p in ("/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified") if os.path.isfile(p + "/cgroup.procs")]
    if not roots and os.path.isfile("/sys/fs/cgroup/cgroup.controllers"):
        roots = ["/sys/fs/cgroup"]
    return roots


class Namespace:
    """A systemd booted as PID 1 of a private PID + mount namespace.

    It starts in a cgroup of its own (like a container manager would give it), so
    its tree stays out of the machine's root cgroup, is removed at the end and
    does not meet another booted systemd's system.slice. consoledir (a folder on
    the machine) receives console.log, systemd's own output."""

    def __init__(self, consoledir, own_root=False):
        self.consoledir = consoledir
        self.own_root = own_root
        self.proc = None
        self.pid = None
        self.cgroups = []
        self.console = None

    def mounts_script(self):
        """Shell commands that give the namespace its file systems (before systemd runs)."""
        if not self.own_root:
            return (
                "mount -t tmpfs tmpfs /tmp && mount -t tmpfs tmpfs /run && "
                "mount -t tmpfs tmpfs /var && "
                # /etc as an overlay whose changes stay in this /run: /etc/nats-accountd
                # and anything systemd writes there never reach the machine.
                "mkdir -p /run/.systest-etc/upper /run/.systest-etc/work && "
                "mount -t overlay overlay -o lowerdir=/etc,upperdir=/run/.systest-etc/upper,"
                "workdir=/run/.systest-etc/work /etc && "
            )
        # The tmpfs on the (old) /tmp holds the upper layers and the new root; it
        # lives on, detached, as long as the overlays use it.
        cmds = ["mount -t tmpfs -o mode=0700 tmpfs /tmp", "mkdir /tmp/root"]
        layers = ["/"] + [d for d in OWN_ROOT_SUBMOUNTS if os.path.ismount(d)]
        for i, d in enumerate(layers):
            cmds += ["mkdir -p /tmp/layer%d/upper /tmp/layer%d/work" % (i, i),
                     "mount -t overlay overlay -o lowerdir=%s,upperdir=/tmp/layer%d/upper,workdir=/tmp/layer%d/work "
                     "/tmp/root%s" % (d, i, i, "" if d == "/" else d)]
        cmds += [
            "mount --rbind /dev /tmp/root/dev",
            "mount --rbind /sys /tmp/root/sys",
            "mount -t proc proc /tmp/root/proc",
            "mount -t tmpfs tmpfs /tmp/root/tmp",
            "mount -t tmpfs tmpfs /tmp/root/run",
            "if [ -d /tmp/root/var/log/journal ]; then mount -t tmpfs tmpfs /tmp/root/var/log/journal; fi",
            # The old root goes away: nothing of the machine's / stays writable in here.
            "cd /tmp/root", "pivot_root . .", "umount -l .", "cd /",
        ]
        return " && ".join(cmds) + " && "

    def boot(self, timeout=60):
        masks = " && ".join("ln -s /dev/null /run/systemd/system/%s" % u for u in NS_UNITS_MASKED)
        script = (
            self.mounts_script() +
            "mount --make-rshared / && "
            "mkdir -p /run/systemd/system /run/systemd/journald.conf.d && "
            "mkdir -m 0755 %s && " % INSIDE_ROOT
            + "printf '[Journal]\\nStorage=volatile\\n' > /run/systemd/journald.conf.d/50-systest.conf && "
            "ln -s /lib/systemd/system/basic.target /run/systemd/system/default.target && "
            + masks
            + " && exec %s --system" % SYSTEMD
        )
        self.console = open(os.path.join(self.consoledir, "console.log"), "wb")
        name = "nats-accountd-systest-%d" % os.getpid()
        self.cgroups = []
        for root in cgroup_roots():
            try:
                os.mkdir(os.path.join(root, name))
                self.cgroups.append(os.path.join(root, name))
            except FileExistsError:
                self.cgroups.append(os.path.join(root, name))
            except OSError as e:
                log("no cgroup of its own under %s: %s" % (root, e))
        cgroups = list(self.cgroups)

        def enter_cgroup():
            for cg in cgroups:
                with open(os.path.join(cg, "cgroup.procs"), "w") as f:
                    f.write("0")

        args = ["unshare", "--pid", "--fork", "--mount", "--mount-proc", "--propagation", "private", "bash", "-c", script]
        try:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self.console, stderr=subprocess.STDOUT,
                                         start_new_session=True, preexec_fn=enter_cgroup if cgroups else None)
        except subprocess.SubprocessError as e:
            log("cannot start in a cgroup of its own (%s); booting in the current one" % e)
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self.console, stderr=subprocess.STDOUT,
                                         start_new_session=True)

        def pid1():
            if self.proc.poll() is not None:
                raise SetupError("unshare exited with %s; see %s/console.log" % (self.proc.returncode, self.consoledir))
            for k in self.children():
                try:
                    with open("/proc/%d/comm" % k) as f:
                        if f.read().strip() == "systemd":
                            return k
                except OSError:
                    pass
            return None

        self.pid = poll(pid1, 15, "systemd as PID 1 of the namespace")
        state = {}

        def booted():
            r = self.run(["systemctl", "is-system-running"], check=False, timeout=10)
            state["s"] = r.stdout.strip()
            return state["s"] in ("running", "degraded")

        poll(booted, timeout, "systemctl is-system-running = running|degraded", interval=0.2)
        if state["s"] == "degraded":
            r = self.run(["systemctl", "--failed", "--no-legend", "--plain"], check=False)
            log("system is degraded; failed units:\n" + r.stdout)

    # Files inside ---------------------------------------------------------------

    def path(self, inside):
        """The machine's view of a path inside the namespace (through its PID 1's root)."""
        if self.pid is None:
            raise SetupError("namespace not booted")
        if not inside.startswith("/"):
            raise ValueError("not an absolute path: %r" % inside)
        return "/proc/%d/root%s" % (self.pid, inside)

    def mkdir(self, inside, mode=0o755):
        os.makedirs(self.path(inside), exist_ok=True)
        os.chmod(self.path(inside), mode)
        return inside

    def install(self, src, inside, mode=0o755):
        """Copy a file of the machine into the namespace; returns the inside path."""
        os.makedirs(os.path.dirname(self.path(inside)), exist_ok=True)
        tmp = self.path(inside) + ".tmp"
        shutil.copyfile(src, tmp)
        os.chmod(tmp, mode)
        os.rename(tmp, self.path(inside))
        return inside

    # Commands inside ------------------------------------------------------------

    def run(self, args, check=True, timeout=30, input_text=None):
        if self.pid is None:
            raise SetupError("namespace not booted")
        cmd = ["nsenter", "-t", str(self.pid), "-p", "-m", "--"] + [str(a) for a in args]
        try:
            r = subprocess.run(cmd, input=input_text, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, timeout=timeout,
                               stdin=None if input_text is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise AssertionError("%s did not finish within %ss" % (" ".join(map(str, args)), timeout)) from e
        if check and r.returncode != 0:
            raise AssertionError("%s exited %d:\n%s%s" % (" ".join(map(str, args)), r.returncode, r.stdout, r.stderr))
        return r

    def journal(self, *matches, unit=None, since=None):
        """Journal entries (dicts) of `unit` matching journalctl `matches`, at or after
        `since` (microseconds since the epoch) when given."""
        args = ["journalctl", "--no-pager", "-o", "json"] + (["-u", unit] if unit else [])
        if since is not None:
            # journalctl skips the older entries itself (to the second; the exact
            # cut is below): after a scale test the journal holds 200,000 entries,
            # and dumping them all as JSON for each query took over 30 s on a busy
            # machine.
            args.append("--since=@%d" % (since // 1000000))
        r = self.run(args + list(matches), check=False, timeout=120)
        out = []
        for line in r.stdout.splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if since is None or int(e.get("__REALTIME_TIMESTAMP", "0")) >= since:
                out.append(e)
        return out

    def journal_text(self, unit):
        return self.run(["journalctl", "--no-pager", "-o", "short-precise", "-u", unit], check=False).stdout

    def children(self):
        """The unshare process's child: the namespace's PID 1 (bash, then systemd)."""
        if self.proc is None:
            return []
        try:
            with open("/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid)) as f:
                return [int(x) for x in f.read().split()]
        except (OSError, ValueError):
            return []

    def kill(self):
        """SIGKILL to the namespace's PID 1 ends the whole PID namespace (and its tmpfs)."""
        victims = [self.pid] if self.pid is not None else self.children()
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc is not None and not victims and self.proc.poll() is None:
            self.proc.kill()  # not forked yet: no namespace to end
        if self.proc is not None:
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.pid = None
        if self.console is not None:
            self.console.close()
            self.console = None
        # Its (now empty) cgroup tree, leaves first; the kernel may need a moment to release them.
        deadline = time.monotonic() + 10
        for cg in self.cgroups:
            while os.path.isdir(cg):
                for dirpath, dirnames, _ in os.walk(cg, topdown=False):
                    try:
                        os.rmdir(dirpath)
                    except OSError:
                        pass
                if not os.path.isdir(cg) or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            if os.path.isdir(cg):
                log("could not remove %s" % cg)
        self.cgroups = []


def run_suite(module_name, env_factory, journal_units=()):
    """main() of a systemd test file: skip where booting is impossible, take the
    lock, build the environment (env_factory() -> object with setup(), teardown()
    and journal_text(unit)), run the module's unittest cases, tear down on every
    path (also SIGTERM/SIGINT from meson's timeout). Returns the exit code."""
    import unittest

    why = skip_reason()
    if why:
        print("SKIP: %s" % why)
        return SKIP
    holder = {}

    def on_signal(signo, frame):
        # unittest would take an exception for a test error and go on: tear down here and leave.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        log("signal %d: tearing down" % signo)
        try:
            if holder.get("env") is not None:
                holder["env"].teardown()
        finally:
            os._exit(128 + signo)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    ok = False
    with exclusive():
        env = env_factory()
        holder["env"] = env
        try:
            t0 = time.monotonic()
            env.setup()
            log("namespace PID 1 is %d; set-up took %.1fs" % (env.ns.pid, time.monotonic() - t0))
            prog = unittest.main(module=module_name, argv=sys.argv[:1] + sys.argv[1:], exit=False, verbosity=2)
            ok = prog.result.wasSuccessful()
            if not ok or os.environ.get("SYSTEST_JOURNAL"):
                for unit in journal_units:
                    log("journal of %s:\n%s" % (unit, env.journal_text(unit)[-8000:]))
        finally:
            env.teardown()
    return 0 if ok else 1
