"""What the servers send is input: verified, attributed, never trusted blindly (issue 10).

Against real nats-servers on loopback (ports they pick):
  - AttributionTest: a 2-node cluster and a hostile system-account client that
    answers every CLAIMS.UPDATE in the name of one real server;

Run by meson (suite 'integration') with NATS_ACCOUNTD and NATS_PROBE set:
    python3 test_trust.py -v
nats-server must be on PATH (or NATS_SERVER): without it the tests fail, never skip.
"""

import os
import signal
import subprocess
import sys
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from test_daemon import Daemon, save_atomic  # noqa: E402

APP_ONLY = "accounts:\n  APP:\n    jetstream:\n      max_memory: 1MiB\n      max_store: 1MiB\n      max_streams: %d\n"


def server_ids(sb, n):
    """server name -> id, from every server's VARZ."""
    return {r["server"]["name"]: r["server"]["id"] for r in sb.gather_json("$SYS.REQ.SERVER.PING.VARZ", n)}


class AttributionTest(unittest.TestCase):
    def setUp(self):
        self.daemon = None
        self.forger = None
        self.sb = harness.Cluster(2)
        try:
            self.sb.start_cluster()
            # The daemon talks to c1 only: c2's replies come through the route.
            self.sb.set_setting("servers", self.sb.servers[0].url)
            self.sb.set_setting("log_level", "debug")
            self.sb.write_accounts(APP_ONLY % 10)
        except harness.HarnessError as e:
            logs = self.sb.server_logs()
            self.sb.cleanup()
            self.fail("%s\n%s" % (e, logs))

    def tearDown(self):
        if self.forger and self.forger.poll() is None:
            self.forger.kill()
            self.forger.wait(timeout=5)
        for s in self.sb.servers:
            if s.running():
                os.kill(s.proc.pid, signal.SIGCONT)
        if self.daemon:
            self.daemon.kill()
        self.sb.cleanup()

    def test_duplicate_reply_does_not_stand_in_for_a_silent_server(self):
        self.daemon = Daemon(self.sb.t["accountd"], self.sb.conf)
        first = self.daemon.wait_pass_after(0, timeout=20)
        self.assertEqual((first["changed"], first["failed"]), (1, 0), self.daemon.text())
        ids = server_ids(self.sb, 2)
        # Every update now also gets a "jwt updated" that claims to come from c1.
        self.forger = subprocess.Popen(
            [self.sb.t["probe"], "forge-update-replies", self.sb.sys_creds, self.sb.servers[0].url, ids["c1"]],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.assertEqual(self.forger.stdout.readline().strip(), "ready")

        c2 = self.sb.servers[1]
        os.kill(c2.proc.pid, signal.SIGSTOP)
        since = self.daemon.mark()
        save_atomic(self.sb.accounts_file, APP_ONLY % 11)
        # c1 answers, the forger answers as c1 again, c2 is silent: not applied.
        i, _, m = self.daemon.wait_line(r"^error: APP: .*servers confirmed the update", since, timeout=20)
        self.assertRegex(m.string, r"1 of 2 servers confirmed the update.*no reply from c2 \(%s\)" % ids["c2"])
        self.assertFalse(self.daemon.find(r"^APP updated", since), self.daemon.text(since))
        os.kill(c2.proc.pid, signal.SIGCONT)
        # Once c2 is back (and has caught up with what was sent to it), a retry
        # finds both servers holding the new JWT.
        def retried_in_sync():
            return [p for p in self.daemon.passes(i) if p["failed"] == 0]

        harness.poll(retried_in_sync, 30, "a retry without failures")
        key = harness.jwt_claims(self.sb.lookup_jwt(self.sb.account_keys()["APP"]))["sub"]
        r = self.sb.probe("gather", self.sb.sys_creds, self.sb.url, "$SYS.REQ.ACCOUNT.%s.CLAIMS.LOOKUP" % key, "",
                          3000, 2)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual([harness.jwt_claims(j)["nats"]["limits"]["streams"] for j in r.stdout.split()], [11, 11])


if __name__ == "__main__":
    unittest.main()
