"""nats-probe, the tests' own NATS client, against replies that keep coming.

Every server of a cluster answers a $SYS request, so replies still arrive
when the probe has the one (or the COUNT) it waits for and shuts down. With
libnats before 3.6.1 (Debian 12 ships 3.4.1) a message that arrives while a
subscription is being freed makes the library's reader thread use freed memory
(nats.c #637): the probe died of SIGSEGV or SIGABRT, or hung, in a few runs in
a thousand of the cluster tests. Here a responder answers every request with a
flood of replies: 7 to 13 runs in 100 crashed or hung before the fix; each
command must end normally every time and print what it was asked for.

Run by meson (suite 'integration'); without a nats-server it skips (77).
"""

import os
import shutil
import socket
import sys
import tempfile
import threading
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import LOOPBACK, NatsServer  # noqa: E402

FLOOD = 2000  # replies to each request
ROUNDS = 60  # runs of each command
ACK = b'{"stream":"S","seq":7}'


class Flooder:
    """A raw-protocol NATS client subscribed to `flood`: each request gets FLOOD replies."""

    def __init__(self, url):
        host, port = url[len("nats://"):].rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.file = self.sock.makefile("rb")
        if not self.file.readline().startswith(b"INFO "):
            raise harness.HarnessError("no INFO from %s" % url)
        self.sock.sendall(b'CONNECT {"verbose":false,"pedantic":false,"headers":true}\r\nSUB flood 1\r\nPING\r\n')
        while True:
            line = self.file.readline()
            if not line or line.startswith(b"-ERR"):
                raise harness.HarnessError("the flood responder was refused: %r" % line)
            if line.startswith(b"PONG"):
                break
        self.sock.settimeout(None)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            while True:
                line = self.file.readline()
                if not line:
                    return
                parts = line.split()
                if parts[0] == b"PING":
                    self.sock.sendall(b"PONG\r\n")
                elif parts[0] in (b"MSG", b"HMSG"):
                    # MSG subject sid [reply] size / HMSG subject sid [reply] hdr_size total_size
                    self.file.read(int(parts[-1]) + 2)
                    if len(parts) == (6 if parts[0] == b"HMSG" else 5):
                        self.sock.sendall(b"PUB %s %d\r\n%s\r\n" % (parts[3], len(ACK), ACK) * FLOOD)
        except OSError:
            return

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(10)


class ProbeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.probe = harness.tools()["probe"]
        cls.root = tempfile.mkdtemp(prefix="nats-accountd-it-probe.")
        conf = os.path.join(cls.root, "nats-server.conf")
        with open(conf, "w") as f:
            f.write('listen: %s:-1\nports_file_dir: "%s"\n' % (LOOPBACK, cls.root))
        cls.server = NatsServer(harness.tools()["server"], conf, cls.root, os.path.join(cls.root, "server.log"))
        cls.flooder = None
        try:
            cls.server.start()
            cls.flooder = Flooder(cls.server.url)
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.flooder:
            cls.flooder.close()
        cls.server.stop()
        shutil.rmtree(cls.root, ignore_errors=True)

    def runs(self, args, lines, out=None):
        """ROUNDS runs of the probe with args: each exits 0 and prints `lines` lines (each `out`, when given)."""
        args = [str(a) for a in args]
        bad = []
        for _ in range(ROUNDS):
            try:
                r = harness.run([self.probe] + args, timeout=30)
            except harness.HarnessError as e:
                bad.append(str(e))
                continue
            got = r.stdout.splitlines()
            if r.returncode != 0 or len(got) != lines or (out is not None and set(got) != {out}):
                bad.append("exit %d, %d lines: %s" % (r.returncode, len(got), (r.stderr or r.stdout)[-300:]))
        self.assertEqual(bad, [], "%d of %d runs of %s" % (len(bad), ROUNDS, " ".join(args[:1] + args[3:])))

    def test_request_takes_the_first_reply(self):
        self.runs(["request", "", self.server.url, "flood", "", 5000], 1, ACK.decode())

    def test_request_header_takes_the_first_reply(self):
        self.runs(["request-header", "", self.server.url, "flood", "x", "X-Test:1", 5000], 1, ACK.decode())

    def test_gather_stops_at_the_count(self):
        self.runs(["gather", "", self.server.url, "flood", "", 5000, 3], 3, ACK.decode())

    def test_publish_acked_takes_each_publish_its_own_ack(self):
        self.runs(["publish-acked", "", self.server.url, "flood", 3], 1, "3 acked, last seq 7")


if __name__ == "__main__":
    harness.main()
