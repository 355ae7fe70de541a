"""nsc (pinned in tools/go-pins.txt) as the other tool on the same accounts.

An operator with a signing key, a system account and an account with a
description, an export, a signing key, a connection limit and JetStream limits
are made with nsc; the server's configuration comes from
`nsc generate config --nats-resolver`; nsc pushes the accounts. nats-accountd
then manages that account's JetStream limits, signing with nsc's operator
signing key:
  - `nsc pull` + `nsc describe account` show the file's limits, and every claim
    nsc set is as nsc set it;
  - `nsc edit account` + `nsc push` afterwards is accepted (nsc's JWT replaces
    ours, whatever the iat), and the next `nats-accountd apply` changes only the
    limit the file owns; nsc's other edits stay.

nsc's data, keystore and config folders and HOME are in the sandbox: nothing
is read from or written to ~. Run by meson (suite 'integration') with
NATS_ACCOUNTD and NATS_PROBE set; NATS_SERVER picks the server, NSC a prebuilt
nsc (default: built by tools/go-tools.sh). Without a server or without Go the
program skips (exit 77).
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import jwt_claims  # noqa: E402

MiB = 1024 * 1024

# The accounts file: JetStream limits of SHOP only (no `limits` key, so the
# connection limit nsc set is not the file's).
ACCOUNTS = """accounts:
  SHOP:
    jetstream:
      max_memory: 2MiB
      max_store: 8MiB
      max_streams: 5
"""
FILE_JS = {"mem_storage": 2 * MiB, "disk_storage": 8 * MiB, "streams": 5, "consumer": -1, "max_ack_pending": -1,
           "mem_max_stream_bytes": -1, "disk_max_stream_bytes": -1}
JS_CLAIMS = tuple(FILE_JS) + ("max_bytes_required",)


class NscTest(unittest.TestCase):
    maxDiff = None
    def setUp(self):
        self.nsc_bin = harness.go_program("path", "nsc")
        self.t = harness.tools()
        self.root = tempfile.mkdtemp(prefix="nats-accountd-it-nsc.")
        self.home = os.path.join(self.root, "home")
        self.store = os.path.join(self.root, "nsc")
        self.dir = os.path.join(self.root, "run")
        for d in (self.home, self.store, self.dir):
            os.mkdir(d, 0o700)
        self.server = None
        self.recorder = None
        self.pushed = os.path.join(self.root, "pushed.jwts")

    def tearDown(self):
        problems = None
        try:
            if self.recorder:
                self.recorder.stop()
            problems = self.jwtcheck()
        finally:
            if self.server:
                self.server.stop()
            if os.environ.get("KEEP_SANDBOX") or problems:
                print("sandbox kept in", self.root)
            else:
                shutil.rmtree(self.root, ignore_errors=True)
        if problems:
            self.fail("nats-io/jwt (tests/jwtcheck) rejects what was pushed:\n" + problems)

    # tools -------------------------------------------------------------------

    def nsc(self, *args, ok=True):
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": self.home,
               "XDG_CONFIG_HOME": os.path.join(self.home, "config"), "XDG_DATA_HOME": os.path.join(self.home, "data")}
        r = subprocess.run([self.nsc_bin, "-H", self.store] + list(args), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=env, timeout=60)
        if ok:
            self.assertEqual(r.returncode, 0, "nsc %s: exit %d\n%s%s" % (" ".join(args), r.returncode, r.stdout, r.stderr))
        return r

    def describe(self, account):
        return json.loads(self.nsc("describe", "account", account, "--json").stdout)

    def accountd(self, *args):
        return harness.run([self.t["accountd"], "-c", os.path.join(self.dir, "nats-accountd.conf")] + list(args),
                           timeout=120)

    def lookup(self, key):
        r = harness.run([self.t["probe"], "request", self.sys_creds, self.server.url,
                         "$SYS.REQ.ACCOUNT.%s.CLAIMS.LOOKUP" % key, "", 2000])
        self.assertEqual(r.returncode, 0, r.stderr)
        return jwt_claims(r.stdout.strip())

    def jwtcheck(self):
        checker = harness.go_program("local", "tests/jwtcheck")
        operator = os.path.join(self.root, "operator.jwt")
        if not checker or not os.path.exists(operator):
            return None
        args = [checker, "-operator", operator, "-dir", os.path.join(self.dir, "jwt")]
        if os.path.exists(self.pushed):
            args += ["-jwts", self.pushed]
        r = harness.run(args, timeout=120)
        return None if r.returncode == 0 else r.stdout + r.stderr

    def copy_secret(self, src, name):
        dst = os.path.join(self.dir, name)
        shutil.copyfile(src, dst)
        os.chmod(dst, 0o600)
        return dst

    # the deployment ----------------------------------------------------------

    def make_nsc_deployment(self):
        self.nsc("add", "operator", "OP", "--sys")
        self.nsc("edit", "operator", "--sk", "generate")
        self.nsc("add", "account", "SHOP")
        self.nsc("edit", "account", "SHOP", "--description", "the shop's orders", "--sk", "generate",
                 "--conns", "50", "--js-mem-storage", "1M", "--js-disk-storage", "4M", "--js-streams", "3")
        self.nsc("add", "export", "--account", "SHOP", "--subject", "shop.events.>", "--name", "events")
        op = json.loads(self.nsc("describe", "operator", "--json").stdout)
        self.assertEqual(len(op["nats"]["signing_keys"]), 1, op)
        self.operator_signing_key = op["nats"]["signing_keys"][0]
        with open(os.path.join(self.root, "operator.jwt"), "w") as f:
            f.write(self.nsc("describe", "operator", "--raw").stdout.strip() + "\n")

        # nsc's resolver configuration, made to listen where tests may.
        conf = self.nsc("generate", "config", "--nats-resolver", "--sys-account", "SYS").stdout
        conf, n = re.subn(r"(?m)^(\s*dir:\s*)'\./jwt'\s*$", r'\g<1>"%s"' % os.path.join(self.dir, "jwt"), conf)
        self.assertEqual(n, 1, conf)
        conf += ('\nserver_name: nsc-sandbox\nlisten: 127.0.0.1:-1\nports_file_dir: "%s"\n'
                 'jetstream {\n  store_dir: "%s"\n  max_mem: 1G\n  max_file: 1G\n}\n'
                 % (self.dir, os.path.join(self.dir, "jetstream")))
        with open(os.path.join(self.dir, "nats-server.conf"), "w") as f:
            f.write(conf)
        self.server = harness.NatsServer(self.t["server"], os.path.join(self.dir, "nats-server.conf"), self.dir,
                                         os.path.join(self.root, "server.log")).start()
        self.sys_creds = self.copy_secret(os.path.join(self.store, "creds", "OP", "SYS", "sys.creds"), "sys.creds")
        self.recorder = harness.Recorder(self.t["probe"], self.sys_creds, self.server.url, self.pushed)
        self.nsc("edit", "operator", "--account-jwt-server-url", self.server.url)
        self.nsc("push", "--all")

        key = self.describe("SHOP")["sub"]
        seeds = [p for p in (os.path.join(dp, f) for dp, _, fs in os.walk(os.path.join(self.store, "keys")) for f in fs)
                 if os.path.basename(p) == self.operator_signing_key + ".nk"]
        self.assertEqual(len(seeds), 1, "nsc's keystore holds the operator signing key's seed")
        self.copy_secret(seeds[0], "operator-signer.nk")
        with open(os.path.join(self.dir, "accounts.yaml"), "w") as f:
            f.write(ACCOUNTS)
        with open(os.path.join(self.dir, "nats-accountd.conf"), "w") as f:
            f.write("[nats]\nservers = %s\ncredentials = sys.creds\n\n"
                    "[accounts]\nfile = accounts.yaml\nmode = operator\ncreate_missing = no\nstate_dir = state\n\n"
                    "[operator]\nsigning_key = operator-signer.nk\n" % self.server.url)
        return key

    # the test ----------------------------------------------------------------

    def assertClaimsKept(self, before, after, what):
        """Everything but the JetStream limits, iat, jti and the issuer is as before."""
        b, a = json.loads(json.dumps(before)), json.loads(json.dumps(after))
        for c in (b, a):
            for k in ("iat", "jti", "iss"):
                c.pop(k, None)
            for k in JS_CLAIMS:
                c["nats"]["limits"].pop(k, None)
        self.assertEqual(a, b, what)

    def test_nsc_account_managed_by_accountd(self):
        key = self.make_nsc_deployment()
        made = self.describe("SHOP")
        self.assertEqual(made["nats"]["description"], "the shop's orders")
        self.assertEqual(made["nats"]["limits"]["conn"], 50)
        self.assertEqual(len(made["nats"]["signing_keys"]), 1, made)
        self.assertEqual(self.lookup(key)["jti"], made["jti"], "nsc push stored nsc's JWT")

        r = self.accountd("apply")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r"(?m)^~ SHOP\b")
        ours = self.lookup(key)
        self.assertEqual(ours["iss"], self.operator_signing_key, "signed with nsc's operator signing key")

        # nsc reads back what the server holds: our limits, its own claims.
        self.nsc("pull", "--all")
        pulled = self.describe("SHOP")
        self.assertEqual(pulled["jti"], ours["jti"], "nsc pulled the JWT nats-accountd pushed")
        self.assertEqual({k: pulled["nats"]["limits"].get(k) for k in FILE_JS}, FILE_JS)
        self.assertClaimsKept(made, pulled, "every claim nsc set survives nats-accountd")
        self.assertGreater(pulled["iat"], 0)
        r = self.nsc("validate", "--account", "SHOP")
        self.assertEqual(re.findall(r"\| *(.*?) *\|", r.stdout + r.stderr).count("No issues found"), 2,
                         "nsc validate finds no issue with the operator and SHOP:\n" + r.stdout + r.stderr)

        # The operator edits the account with nsc, a limit the file owns too.
        self.nsc("edit", "account", "SHOP", "--description", "edited with nsc", "--conns", "60", "--js-streams", "9")
        r = self.nsc("push", "--account", "SHOP")
        self.assertRegex(r.stdout + r.stderr, r"jwt updated", "nsc's push is accepted:\n" + r.stdout + r.stderr)
        edited = self.describe("SHOP")
        on_server = self.lookup(key)
        self.assertEqual(on_server["jti"], edited["jti"], "the server holds nsc's JWT")
        self.assertGreaterEqual(on_server["iat"], ours["iat"], "nsc's JWT is as new as ours or newer")

        r = self.accountd("plan")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        lines = [l for l in r.stdout.splitlines() if l.strip()]
        self.assertEqual(len(lines), 1, r.stdout)
        self.assertRegex(lines[0], r"^~ SHOP\b", r.stdout)
        # Only the limit the file owns and nsc changed; not nsc's conn or description.
        self.assertEqual(re.findall(r"(\w+) \S+ -> \S+", lines[0]), ["max_streams"], r.stdout)
        self.assertIn("max_streams 9 -> 5", lines[0])
        r = self.accountd("apply")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        restored = self.lookup(key)
        self.assertGreater(restored["iat"], on_server["iat"], "our JWT replaces nsc's: its iat is newer")

        self.nsc("pull", "--all")
        final = self.describe("SHOP")
        self.assertEqual(final["jti"], restored["jti"])
        self.assertEqual(final["nats"]["description"], "edited with nsc")
        self.assertEqual(final["nats"]["limits"]["conn"], 60)
        self.assertEqual({k: final["nats"]["limits"].get(k) for k in FILE_JS}, FILE_JS)
        self.assertClaimsKept(edited, final, "nsc's edits other than the file's limits stay")
        self.assertEqual(self.accountd("plan", "--detailed-exitcode").returncode, 0, "in sync")


if __name__ == "__main__":
    harness.main(needs=("nsc",))
