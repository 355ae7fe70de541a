#!/usr/bin/env python3
"""Config mode against an embedded nats-server 2.10.23 (issue 9).

tests/embedded is a Go program that embeds the server as an application does:
server.ProcessConfigFile on the config of `nats-accountd init --mode config`
(system account SYS, accounts APP, ORDERS, LEGACY), server.NewServer, Start,
and nothing else; it owns its signals (NoSigs). nats-accountd `run` turns
APP's JetStream on with limits, changes them, disables and enables it again
(the stream's data back), while the program runs on: one process, one start.

Built by tools/go-tools.sh (a cache outside the repository); without Go the
test skips (exit 77) with one line.
"""

import json
import os
import subprocess
import sys
import unittest

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import confmode  # noqa: E402
import harness  # noqa: E402
from harness import js_limits, poll  # noqa: E402

SKIP = 77
MiB = 1024 * 1024
EMBEDDED = None

ACCOUNTS = """accounts:
  APP:
    jetstream: {js}
  ORDERS:
    jetstream: disabled
  LEGACY:
    jetstream: disabled
"""


def build():
    """The embedded server's binary, or None (with the reason printed) when Go is missing."""
    r = subprocess.run(["bash", os.path.join(TOP, "tools", "go-tools.sh"), "local", os.path.join(TOP, "tests", "embedded")],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=900)
    if r.returncode == SKIP:
        print("SKIP: %s" % (r.stderr.strip().splitlines() or ["Go not found"])[-1])
        return None
    if r.returncode != 0:
        raise SystemExit("building tests/embedded failed:\n%s" % r.stderr)
    return r.stdout.strip().splitlines()[-1]


class EmbeddedTest(unittest.TestCase):
    def setUp(self):
        self.sb = confmode.ConfigSandbox("embedded")
        self.log = open(os.path.join(self.sb.root, "embedded.log"), "w")
        self.proc = subprocess.Popen([EMBEDDED, self.sb.path("nats-server.conf")], stdout=subprocess.PIPE,
                                     stderr=self.log, text=True, start_new_session=True)
        line = self.proc.stdout.readline().split()
        if len(line) != 3 or line[0] != "ready":
            self.fail("the embedded server did not start: %r\n%s" % (line, self.sb.server_log()))
        self.url = line[1]
        harness._check_url(self.url)
        self.sb.set_setting("servers", self.url)
        self.sb.external_url = self.url
        self.sb.wait_system_api(1)
        self.daemon = None

    def tearDown(self):
        if self.daemon and self.daemon.poll() is None:
            self.daemon.terminate()
            self.daemon.wait(10)
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)
        self.proc.stdout.close()
        self.log.close()
        self.sb.cleanup()

    def wait_info(self, pred, what):
        last = {}

        def check():
            last["info"] = self.sb.js_info_of("APP", url=self.url)
            return pred(last["info"])

        try:
            poll(check, 20, what, interval=0.1)
        except harness.HarnessError as e:
            with open(os.path.join(self.sb.root, "daemon.log")) as f:
                self.fail("%s; last $JS.API.INFO: %s\n--- daemon\n%s" % (e, last.get("info"), f.read()))
        return last["info"]

    def test_daemon_drives_the_embedded_server(self):
        sb = self.sb
        pid = self.proc.pid
        self.assertIsNone(sb.js_info_of("APP", url=self.url), "APP starts without JetStream")
        sb.write_accounts(ACCOUNTS.format(js="{ max_memory: 64MiB, max_store: 256MiB, max_streams: 10 }"))
        dlog = open(os.path.join(sb.root, "daemon.log"), "w")
        self.daemon = subprocess.Popen([sb.t["accountd"], "-c", sb.conf, "run"], stdout=dlog, stderr=subprocess.STDOUT)
        dlog.close()

        def limits(mem, store, streams):
            return lambda info: info is not None and (js_limits(info).get("max_memory"), js_limits(info).get(
                "max_storage"), js_limits(info).get("max_streams")) == (mem, store, streams)

        self.wait_info(limits(64 * MiB, 256 * MiB, 10), "APP's JetStream on with its limits")
        user = sb.user("APP")
        created = sb.request_json(user, "$JS.API.STREAM.CREATE.KEEP",
                                  json.dumps({"name": "KEEP", "subjects": ["keep.>"], "storage": "file"}), url=self.url)
        self.assertNotIn("error", created, created)
        self.assertEqual(sb.probe("publish-acked", user, self.url, "keep.x", 7).returncode, 0)

        sb.write_accounts(ACCOUNTS.format(js="{ max_memory: 32MiB, max_store: 512MiB, max_streams: 20 }"))
        self.wait_info(limits(32 * MiB, 512 * MiB, 20), "the changed limits")

        sb.write_accounts(ACCOUNTS.format(js="disabled"))
        self.wait_info(lambda info: info is None, "APP's JetStream off")

        sb.write_accounts(ACCOUNTS.format(js="{ max_memory: 64MiB, max_store: 256MiB, max_streams: 10 }"))
        self.wait_info(limits(64 * MiB, 256 * MiB, 10), "APP's JetStream on again")

        def seven():
            r = sb.request(user, "$JS.API.STREAM.INFO.KEEP", timeout_ms=1000, url=self.url)
            doc = json.loads(r.stdout) if r.returncode == 0 else {}
            return (doc.get("state") or {}).get("messages") == 7

        poll(seven, 10, "stream KEEP back with its 7 messages", interval=0.2)
        # One process, started once: no restart, no signal (it would have ended it: NoSigs).
        self.assertIsNone(self.proc.poll(), "the embedded server is still running")
        self.assertEqual(self.proc.pid, pid)
        self.assertEqual(self.proc.stdout.read(0), "")
        with open(os.path.join(sb.root, "daemon.log")) as f:
            text = f.read()
        for line in ("APP enabled:", "APP updated: max_memory 64MiB -> 32MiB", "APP disabled", "APP enabled:"):
            self.assertIn(line, text)
        self.assertIsNone(self.daemon.poll(), "the daemon is running")


def main():
    global EMBEDDED
    EMBEDDED = build()
    if EMBEDDED is None:
        return SKIP
    prog = unittest.main(argv=sys.argv[:1] + sys.argv[1:], exit=False, verbosity=2)
    return 0 if prog.result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
