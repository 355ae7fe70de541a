"""What the servers send is input: verified, attributed, never trusted blindly (issue 10).

Against real nats-servers on loopback (ports they pick):
  - AttributionTest: a 2-node cluster and a hostile system-account client that
    answers every CLAIMS.UPDATE in the name of one real server;
  - RogueResolverTest: JWTs signed by a key the operator does not list (or
    issued in the future) pushed into the full resolver, which stores them;
  - SuperclusterTest: clusters A (a1, a2) and B (b1, b2) joined by gateways
    whose every byte is delayed 0.25 s (harness.SuperCluster);
  - PartialCreateTest: a 3-node cluster where c3 stops in the middle of the
    first creates and loses them, then a retry.

Run by meson (suite 'integration') with NATS_ACCOUNTD and NATS_PROBE set:
    python3 test_trust.py -v
nats-server must be on PATH (or NATS_SERVER): without it the tests fail, never skip.
"""

import hashlib
import json
import os
import re
import signal
import time
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
        self.assertEqual(self.daemon.servers_counted(), 2, self.daemon.text())
        ids = server_ids(self.sb, 2)
        # Every update now also gets a "jwt updated" that claims to come from c1.
        self.forger = subprocess.Popen(
            [self.sb.t["probe"], "forge-update-replies", self.sb.sys_creds, self.sb.servers[0].url, ids["c1"]],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.assertEqual(self.forger.stdout.readline().strip(), "ready")

        c2 = self.sb.servers[1]
        harness.sigstop(c2.proc.pid)
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


class RogueResolverTest(unittest.TestCase):
    """A fresh standalone server per test; the rogue pushes with the system user's credentials."""

    def setUp(self):
        self.sb = harness.Sandbox("rogue")
        try:
            self.sb.start_server()
        except harness.HarnessError as e:
            self.sb.cleanup()
            self.fail(str(e))
        r = self.sb.probe("gen-seed", "operator")
        self.rogue_seed = self.sb.write("rogue-operator.nk", r.stdout, 0o600)

    def tearDown(self):
        self.sb.cleanup()

    def out(self, r):
        return "exit %d\n--- stdout\n%s--- stderr\n%s" % (r.returncode, r.stdout, r.stderr)

    def sign(self, seed, key, name, iat="now", export=None):
        args = ["sign-account", seed, key, name, str(iat)] + ([export] if export else [])
        r = self.sb.probe(*args)
        self.assertEqual(r.returncode, 0, self.out(r))
        key, jwt = r.stdout.split()
        return key, jwt

    def plan(self):
        r, doc = self.sb.plan_json()
        return r, {a["name"]: a for a in doc["accounts"]}

    def names_in_resolver(self):
        """name -> [keys] of every JWT the resolver holds (CLAIMS.PACK)."""
        r = self.sb.probe("gather", self.sb.sys_creds, self.sb.url, "$SYS.REQ.CLAIMS.PACK", "", 5000, "until-empty")
        self.assertEqual(r.returncode, 0, r.stderr)
        names = {}
        for line in r.stdout.split():
            key, jwt = line.split("|", 1)
            names.setdefault(harness.jwt_claims(jwt).get("name"), []).append(key)
        return names

    def test_forgery_named_like_an_account_to_create_is_never_adopted(self):
        rogue_key, rogue_jwt = self.sign(self.rogue_seed, "new", "APP", export="stolen.>")
        self.sb.plant_jwt(rogue_key, rogue_jwt)  # the full resolver stores it: "jwt updated"
        self.assertEqual(self.sb.lookup_jwt(rogue_key), rogue_jwt)

        r, plan = self.plan()
        self.assertEqual(r.returncode, 1, self.out(r))
        self.assertEqual(plan["APP"]["action"], "error", plan["APP"])
        self.assertIn(rogue_key, plan["APP"]["error"])
        self.assertIn("not trusted", plan["APP"]["error"])
        self.assertIn("neither the operator nor one of its signing keys", plan["APP"]["error"])
        self.assertEqual((plan["ORDERS"]["action"], plan["LEGACY"]["action"]), ("create", "create"))
        r = self.sb.accountd("plan")
        self.assertRegex(r.stdout, r"(?m)^! APP\b.*not trusted", self.out(r))

        r = self.sb.accountd("apply")
        self.assertEqual(r.returncode, 1, self.out(r))
        # Not re-signed, and no second APP made beside it.
        self.assertEqual(self.sb.lookup_jwt(rogue_key), rogue_jwt)
        names = self.names_in_resolver()
        self.assertEqual(names.get("APP"), [rogue_key], names)
        self.assertEqual(len(names.get("ORDERS", [])), 1, names)

    def test_forgery_beside_the_real_account_is_ignored(self):
        self.assertEqual(self.sb.accountd("apply").returncode, 0)
        real_key = self.sb.account_keys()["APP"]
        rogue_key, rogue_jwt = self.sign(self.rogue_seed, "new", "APP", export="stolen.>")
        self.sb.plant_jwt(rogue_key, rogue_jwt)

        r, plan = self.plan()
        self.assertEqual(r.returncode, 0, self.out(r))
        self.assertEqual((plan["APP"]["action"], plan["APP"]["key"]), ("unchanged", real_key), plan["APP"])
        self.assertTrue(any(rogue_key in w and "ignoring" in w for w in plan["APP"]["warnings"]), plan["APP"])

        # The real account stays managed: an edit reaches it, the forgery stays as it was.
        text = self.sb.read("accounts.yaml")
        self.sb.write_accounts(text.replace("max_streams: 10", "max_streams: 12", 1))
        r = self.sb.accountd("apply")
        self.assertEqual(r.returncode, 0, self.out(r))
        self.assertEqual(harness.jwt_claims(self.sb.lookup_jwt(real_key))["nats"]["limits"]["streams"], 12)
        self.assertEqual(self.sb.lookup_jwt(rogue_key), rogue_jwt)

    def test_forgery_over_the_real_account_is_never_re_signed(self):
        self.assertEqual(self.sb.accountd("apply").returncode, 0)
        keys = self.sb.account_keys()
        _, rogue_jwt = self.sign(self.rogue_seed, keys["APP"], "APP", export="stolen.>")
        self.sb.plant_jwt(keys["APP"], rogue_jwt)

        text = self.sb.read("accounts.yaml")
        self.sb.write_accounts(text.replace("max_streams: 10", "max_streams: 12", 1).replace(
            "max_store: 128MiB", "max_store: 96MiB", 1))
        r, plan = self.plan()
        self.assertEqual(r.returncode, 1, self.out(r))
        self.assertEqual(plan["APP"]["action"], "error", plan["APP"])
        self.assertIn(keys["APP"], plan["APP"]["error"])
        self.assertIn("not trusted", plan["APP"]["error"])
        self.assertIn("never re-signed", plan["APP"]["error"])

        r = self.sb.accountd("apply", "--json")
        self.assertEqual(r.returncode, 1, self.out(r))
        done = {a["name"]: a for a in json.loads(r.stdout)["accounts"]}
        # The forged export never gets the operator's signature; the other accounts are managed as before.
        self.assertEqual(self.sb.lookup_jwt(keys["APP"]), rogue_jwt)
        self.assertEqual(done["ORDERS"]["action"], "update", done["ORDERS"])
        self.assertEqual(harness.jwt_claims(self.sb.lookup_jwt(keys["ORDERS"]))["nats"]["limits"]["tiered_limits"]
                         ["R1"]["disk_storage"], 96 * 1024 * 1024)

    def test_jwt_from_the_future_is_refused(self):
        self.assertEqual(self.sb.accountd("apply").returncode, 0)
        key = self.sb.account_keys()["APP"]
        # Signed by the real operator signing key, a day ahead of the clock.
        future = int(time.time()) + 86400
        _, jwt = self.sign(self.sb.signer, key, "APP", iat=future)
        self.sb.plant_jwt(key, jwt)
        text = self.sb.read("accounts.yaml")
        self.sb.write_accounts(text.replace("max_streams: 10", "max_streams: 12", 1))

        r, plan = self.plan()
        self.assertEqual(plan["APP"]["action"], "error", plan["APP"])
        self.assertRegex(plan["APP"]["error"], r"issued 8[0-9]{4} s in the future")
        r = self.sb.accountd("apply")
        self.assertEqual(r.returncode, 1, self.out(r))
        # Nothing later than the far-future JWT was pushed after it.
        self.assertEqual(self.sb.lookup_jwt(key), jwt)


PACK_COUNTS = r"CLAIMS\.PACK: (\d+) account JWTs .*signatures checked: (\d+), known \(signed-jwts\): (\d+)"


class VerifiedCacheTest(unittest.TestCase):
    """state_dir/signed-jwts and the daemon's own memory of verified JWTs: a JWT
    whose very bytes were signed or checked before skips its signature check,
    only while its issuer is trusted; anything else is checked as before."""

    def setUp(self):
        self.daemon = None
        self.sb = harness.Sandbox("cache")
        try:
            self.sb.start_server()
        except harness.HarnessError as e:
            self.sb.cleanup()
            self.fail(str(e))
        self.sb.set_setting("log_level", "debug")
        self.cache = self.sb.path("state", "signed-jwts")

    def tearDown(self):
        if self.daemon:
            self.daemon.kill()
        self.sb.cleanup()

    def out(self, r):
        return "exit %d\n--- stdout\n%s--- stderr\n%s" % (r.returncode, r.stdout, r.stderr)

    def cache_entries(self):
        """hash -> issuer of signed-jwts (its first and last lines are the header and the seal)."""
        with open(self.cache) as f:
            lines = f.read().splitlines()
        self.assertTrue(lines[0].startswith("# nats-accountd signed-jwts 1"), lines[0])
        self.assertRegex(lines[-1], r"^end [0-9a-f]{64}$")
        return {l.split()[1]: l.split()[0] for l in lines[1:-1]}

    def held_hash(self, key):
        """BLAKE2b-256 of the JWT the server holds for key."""
        return hashlib.blake2b(self.sb.lookup_jwt(key).encode(), digest_size=32).hexdigest()

    def pubkey(self, seed_file):
        r = self.sb.probe("pubkey-of-seed", seed_file)
        self.assertEqual(r.returncode, 0, self.out(r))
        return r.stdout.strip()

    def start_daemon(self):
        """`run`; (JWTs, signatures checked, known) of its first CLAIMS.PACK."""
        self.daemon = Daemon(self.sb.t["accountd"], self.sb.conf)
        _, _, m = self.daemon.wait_line(PACK_COUNTS, 0, timeout=30)
        return tuple(int(g) for g in m.groups())

    def test_signed_jwts_skip_the_check_until_garbled(self):
        r = self.sb.accountd("apply")
        self.assertEqual(r.returncode, 0, self.out(r))
        keys = self.sb.account_keys()
        self.assertEqual(os.stat(self.cache).st_mode & 0o777, 0o600)
        # The hash of the very JWT the server holds of each account, and the key that signed it.
        signer = self.pubkey(self.sb.signer)
        self.assertEqual(self.cache_entries(), {self.held_hash(key): signer for key in keys.values()})
        # An update: the new JWT's hash replaces the old one's (one line per account).
        text = self.sb.read("accounts.yaml")
        self.sb.write_accounts(text.replace("max_streams: 10", "max_streams: 11", 1))
        r = self.sb.accountd("apply")
        self.assertEqual(r.returncode, 0, self.out(r))
        self.assertEqual(self.cache_entries(), {self.held_hash(key): signer for key in keys.values()})

        total, checked, known = self.start_daemon()
        self.assertEqual((known, checked), (len(keys), total - len(keys)), self.daemon.text())
        self.daemon.wait_pass_after(0, timeout=20)
        # The next sweep (a reload) checks nothing: every JWT was signed or checked by this process.
        since = self.daemon.mark()
        self.daemon.signal(signal.SIGHUP)
        _, _, m = self.daemon.wait_line(PACK_COUNTS, since, timeout=30)
        self.assertEqual((int(m.group(2)), int(m.group(3))), (0, total), self.daemon.text(since))
        self.assertEqual(self.daemon.stop(), 0)

        # A garbled file is used not at all, said so, and written anew by the next apply.
        with open(self.cache, "r+") as f:
            text = f.read()
            f.seek(len(text) // 2)
            f.write("x")
        r = self.sb.accountd("plan")
        self.assertEqual(r.returncode, 0, self.out(r))
        self.assertRegex(r.stderr, r"(?m)^warning: %s: .*not used" % re.escape(self.cache), self.out(r))
        text = self.sb.read("accounts.yaml")
        self.sb.write_accounts(text.replace("max_streams: 11", "max_streams: 12", 1))
        r = self.sb.accountd("apply")
        self.assertEqual(r.returncode, 0, self.out(r))
        self.assertIn("warning: %s" % self.cache, r.stderr)
        # What this apply signed; the others' signatures are checked until they are signed again.
        self.assertEqual(set(self.cache_entries()), {self.held_hash(keys["APP"])})
        r = self.sb.accountd("plan")
        self.assertNotIn("warning", r.stderr, self.out(r))

    def test_forged_signature_is_refused_with_a_warm_cache(self):
        self.assertEqual(self.sb.accountd("apply").returncode, 0)
        key = self.sb.account_keys()["APP"]
        real = self.sb.lookup_jwt(key)
        self.assertIn(self.held_hash(key), self.cache_entries())
        # The same header and claims, one character of the signature changed:
        # the name, the key, the issuer all as before; not the bytes signed.
        head, claims, sig = real.split(".")
        i = len(sig) // 2
        forged = "%s.%s.%s%s%s" % (head, claims, sig[:i], "B" if sig[i] != "B" else "C", sig[i + 1:])
        jwt_dir = re.search(r'(?ms)^resolver\s*\{.*?^\s*dir:\s*"(.*?)"$', self.sb.read("nats-server.conf")).group(1)

        def plant():
            with open(os.path.join(jwt_dir, key + ".jwt"), "w") as f:
                f.write(forged)

        self.sb.planted.add(key)
        self.sb.restart_servers_with(while_stopped=plant)
        self.assertEqual(self.sb.lookup_jwt(key), forged)
        text = self.sb.read("accounts.yaml")
        self.sb.write_accounts(text.replace("max_streams: 10", "max_streams: 12", 1))

        r, doc = self.sb.plan_json()
        plan = {a["name"]: a for a in doc["accounts"]}
        self.assertEqual(r.returncode, 1, self.out(r))
        self.assertEqual(plan["APP"]["action"], "error", plan["APP"])
        self.assertIn("not genuine", plan["APP"]["error"])
        r = self.sb.accountd("apply")
        self.assertEqual(r.returncode, 1, self.out(r))
        self.assertEqual(self.sb.lookup_jwt(key), forged)
        # The daemon, with the file's entries in memory, refuses it as well.
        total, checked, known = self.start_daemon()
        self.assertEqual(known, 2, self.daemon.text())  # ORDERS and LEGACY: the JWTs apply signed
        self.daemon.wait_line(r"^error: APP: .*not genuine", 0, timeout=20)
        self.assertEqual(self.sb.lookup_jwt(key), forged)

    def test_entries_of_an_issuer_no_longer_trusted_are_not_used(self):
        self.assertEqual(self.sb.accountd("apply").returncode, 0)
        n = len(self.cache_entries())
        self.assertEqual(n, len(self.sb.account_keys()))
        # The operator now lists another signing key: the one nats-accountd signed with is not trusted any more.
        r = self.sb.probe("gen-seed", "operator")
        other = self.pubkey(self.sb.write("other-signer.nk", r.stdout, 0o600))
        r = self.sb.probe("resign-set", self.sb.path("operator.nk"), self.sb.operator_jwt, "signing_keys",
                          json.dumps([other]))
        self.assertEqual(r.returncode, 0, self.out(r))
        rotated = self.sb.write("operator-rotated.jwt", r.stdout.strip() + "\n")
        # (operator.jwt itself stays: it is what the JWTs pushed are checked against at the end)
        self.sb.restart_servers_with('"%s"' % self.sb.operator_jwt, '"%s"' % rotated)

        total, checked, known = self.start_daemon()
        self.assertEqual((checked, known), (total, 0), self.daemon.text())
        self.daemon.wait_line(r"^error: APP: .*neither the operator nor one of its signing keys", 0, timeout=20)
        # Entries of a key the servers no longer trust are not kept either.
        harness.poll(lambda: not os.path.exists(self.cache), 20, "signed-jwts without the untrusted entries")


class SuperclusterTest(unittest.TestCase):
    """One supercluster for the class; the daemon's commands talk to a1 only."""

    @classmethod
    def setUpClass(cls):
        cls.sb = harness.SuperCluster(per_cluster=2, delay=0.25)
        try:
            cls.sb.start_supercluster()
        except harness.HarnessError as e:
            logs = cls.sb.server_logs()
            cls.sb.cleanup()
            raise AssertionError("%s\n%s" % (e, logs))

    @classmethod
    def tearDownClass(cls):
        for s in cls.sb.servers:
            if s.running():
                os.kill(s.proc.pid, signal.SIGCONT)
        cls.sb.cleanup()

    def out(self, r):
        return "exit %d\n--- stdout\n%s--- stderr\n%s" % (r.returncode, r.stdout, r.stderr)

    def holders(self, key):
        """How many servers hold a JWT for key (LOOKUP, one reply per server that does)."""
        r = self.sb.probe("gather", self.sb.sys_creds, self.sb.url, "$SYS.REQ.ACCOUNT.%s.CLAIMS.LOOKUP" % key, "",
                          3000, 4)
        return len([line for line in r.stdout.split() if line.strip()])

    def test_1_every_server_behind_the_gateway_counts(self):
        r = self.sb.accountd("apply")
        self.assertEqual(r.returncode, 0, self.out(r))
        # Confirmed by all four: each of them holds every account at once.
        for name, key in self.sb.account_keys().items():
            self.assertEqual(self.holders(key), 4, "servers holding %s" % name)
        r = self.sb.accountd("plan", "--detailed-exitcode")
        self.assertEqual(r.returncode, 0, self.out(r))

    def test_2_a_silent_server_behind_the_gateway_is_noticed(self):
        b2 = next(s for s in self.sb.servers if s.name == "b2")
        text = self.sb.read("accounts.yaml")
        harness.sigstop(b2.proc.pid)
        try:
            self.sb.write_accounts(text.replace("max_streams: 10", "max_streams: 15", 1))
            r = self.sb.accountd("apply")
            # b1 answers (late, through the gateway) and names b2 as its route:
            # without b2's word the change cannot count as applied everywhere.
            self.assertNotEqual(r.returncode, 0, self.out(r))
            # (or, when even b1 is too slow, cluster B as a whole).
            self.assertRegex(r.stderr + r.stdout, r"no reply from (b2 \(a route of b1\)|any server of cluster B)",
                             self.out(r))
        finally:
            os.kill(b2.proc.pid, signal.SIGCONT)
            self.sb.write_accounts(text)


def many_accounts(n):
    return "accounts:\n" + "".join(
        "  ACC%04d:\n    jetstream:\n      max_memory: 1KiB\n      max_store: 1KiB\n" % i for i in range(n))


class PartialCreateTest(unittest.TestCase):
    N = 600  # more than one batch of seeds (512): pushes are still going out when c3 stops

    def setUp(self):
        self.sb = harness.Cluster(3)
        try:
            self.sb.start_cluster()
        except harness.HarnessError as e:
            logs = self.sb.server_logs()
            self.sb.cleanup()
            self.fail("%s\n%s" % (e, logs))
        self.state = self.sb.path("state")
        self.sb.write_accounts(many_accounts(self.N))
        # Three servers on a busy CI host, one of them just restarted: more
        # than the default 2 s for each to answer.
        self.sb.set_setting("request_timeout", "5s")

    def tearDown(self):
        for s in self.sb.servers:
            if s.running():
                os.kill(s.proc.pid, signal.SIGCONT)
        self.sb.cleanup()

    def out(self, r):
        return "exit %d\n--- stdout\n%s--- stderr\n%s" % (r.returncode, r.stdout[-2000:], r.stderr[-2000:])

    def keys_by_name(self, node, damaged_ok=False):
        """name -> set of keys of the JWTs in one server's resolver folder. The server
        truncates a file before it writes it: one read in between is read again.
        damaged_ok: a file that stays cut short (its server was killed as it
        wrote it, daemon bug 9) is left out, not waited for."""
        names = {}
        folder = os.path.join(self.sb.path(node), "jwt")
        for f in os.listdir(folder):
            if not f.endswith(".jwt"):
                continue

            def complete():
                with open(os.path.join(folder, f)) as fh:
                    text = fh.read()
                return text if text.count(".") == 2 else None
            try:
                text = harness.poll(complete, 2 if damaged_ok else 10, "%s's %s written whole" % (node, f))
            except harness.HarnessError:
                if damaged_ok:
                    continue
                raise
            claims = harness.jwt_claims(text)
            names.setdefault(claims.get("name"), set()).add(claims["sub"])
        return names

    def test_retry_after_a_partial_create_makes_no_second_account(self):
        c1, c2, c3 = self.sb.servers
        apply = subprocess.Popen([self.sb.t["accountd"], "-c", self.sb.conf, "apply"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        try:
            # The seeds of the first batch are written (and synced) before the first
            # push goes out: stop c3 as soon as one shows, before the pushes reach it.
            harness.poll(lambda: os.path.isdir(self.state) and os.listdir(self.state), 60, "the first seed",
                         interval=0.001)
            harness.sigstop(c3.proc.pid)
            out, err = apply.communicate(timeout=120)
        finally:
            if apply.poll() is None:
                apply.kill()
        self.assertNotEqual(apply.returncode, 0, "apply with c3 stopped mid-way:\n%s%s" % (out[-2000:], err[-2000:]))
        # c3 dies with whatever was on its way to it, and comes back without it.
        os.kill(c3.proc.pid, signal.SIGKILL)
        c3.proc.wait(timeout=10)
        c3.stop()
        c3.start()
        self.sb.wait_system_api(3, timeout=30)
        # SIGKILLed as it wrote one, c3 may keep a JWT cut short: the retry
        # below must push that account to it again (then checked whole).
        before = self.keys_by_name("c3", damaged_ok=True)
        self.assertLess(len(before), self.N, "c3 should have missed most creates")

        # The retry talks to c3: its CLAIMS.PACK lacks what it missed.
        self.sb.set_setting("servers", c3.url)
        for attempt in range(3):
            r = self.sb.accountd("apply", timeout=300)
            if r.returncode != 69:  # a server still too slow to answer: the daemon would retry too
                break
            time.sleep(2)
        self.assertEqual(r.returncode, 0, self.out(r))
        sys.stderr.write("\n  retry: %s\n" % r.stderr.strip().splitlines()[-1])
        seeds = harness.state_seeds(self.state)
        self.assertEqual(len(seeds), self.N, "one seed per account in state_dir")
        self.assertEqual(len(set(seeds.values())), self.N, "one key per name in state_dir")
        per_server = {node: self.keys_by_name(node) for node in ("c1", "c2", "c3")}
        for node, names in per_server.items():
            for i in range(self.N):
                name = "ACC%04d" % i
                self.assertEqual(len(names.get(name, ())), 1, "%s holds %s as %s" % (node, name, names.get(name)))
        self.assertEqual(per_server["c1"], per_server["c2"])
        self.assertEqual(per_server["c1"], per_server["c3"])
        self.assertEqual({k for keys in per_server["c1"].values() for k in keys} & set(seeds),
                         set(seeds), "every key on the servers is one of the seeds")
        r = self.sb.accountd("plan", "--detailed-exitcode", timeout=120)
        self.assertEqual(r.returncode, 0, self.out(r))

        # user-creds picks the one seed of the name, and its users get in.
        for name in ("ACC0000", "ACC%04d" % (self.N - 1)):
            creds = self.sb.user_creds(name)

            def js_usable():
                # c3 came back moments ago: its JetStream may take a while to rejoin.
                r = self.sb.request(creds, "$JS.API.INFO", url=c3.url)
                return r.returncode == 0 and "error" not in json.loads(r.stdout)

            harness.poll(js_usable, 60, "a user of %s using JetStream through c3" % name, interval=0.5)


if __name__ == "__main__":
    unittest.main()
