"""Operator mode (issue 3) against a real nats-server (NATS_SERVER): standalone and a 3-node cluster.

Run by meson (suite 'integration') with NATS_ACCOUNTD and NATS_PROBE set:
    python3 test_operator.py StandaloneTest
    python3 test_operator.py ClusterTest
nats-server must be on PATH (or NATS_SERVER); without any, the program skips (exit 77).
"""

import json
import os
import re
import sys
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import js_limits, jwt_claims, poll  # noqa: E402

MiB = 1024 * 1024
GiB = 1024 * MiB

# What `nats-accountd init` writes as its example accounts file (daemon/init.c).
EXAMPLE_ACCOUNTS = ("APP", "ORDERS", "LEGACY")
EXAMPLE_APP_LIMITS = {"max_memory": 64 * MiB, "max_storage": 256 * MiB, "max_streams": 10, "max_consumers": 100}

# plan and apply print a count of each action ("0 to create, ..., 3 in sync, 0 failed") on
# stderr, so that stdout holds exactly one line per account (warnings indented under it).
PLAN_SUMMARY = re.compile(r"^\d+ [a-z ]+(, \d+ [a-z ]+)*, \d+ failed$")

APP_ONLY = """accounts:
  APP:
    jetstream:
      max_memory: 64MiB
      max_store: {store}
      max_streams: {streams}
      max_consumers: 100
"""


class OperatorCase(unittest.TestCase):
    sb = None

    def out(self, r):
        return "exit %d\n--- stdout\n%s--- stderr\n%s" % (r.returncode, r.stdout, r.stderr)

    def assertExit(self, r, code, what):
        self.assertEqual(r.returncode, code, "%s: %s" % (what, self.out(r)))

    def apply_ok(self):
        r = self.sb.accountd("apply")
        self.assertExit(r, 0, "apply")
        return r

    def edit_accounts(self, old, new):
        text = self.sb.read("accounts.yaml")
        self.assertEqual(text.count(old), 1, "%r once in accounts.yaml:\n%s" % (old, text))
        self.sb.write_accounts(text.replace(old, new))

    def keys(self):
        return self.sb.account_keys()

    def claims_of(self, key):
        jwt = self.sb.lookup_jwt(key)
        self.assertIsNotNone(jwt, "the resolver holds no JWT for %s" % key)
        return jwt_claims(jwt)

    def plan_lines(self, r):
        """Account lines of text plan output (indented warnings set apart); the summary is on stderr."""
        lines = [l for l in r.stdout.splitlines() if l.strip() and not l.startswith("    warning: ")]
        self.assertTrue(lines, "plan printed nothing: " + self.out(r))
        for l in lines:
            self.assertNotRegex(l, PLAN_SUMMARY, "the summary belongs on stderr")
        self.assertRegex(r.stderr.strip().splitlines()[-1], PLAN_SUMMARY, "plan counts its actions on stderr")
        return lines


class FreshServerCase(OperatorCase):
    """One fresh sandbox and server per test: no test depends on another's leftovers."""

    label = "standalone"

    def setUp(self):
        try:
            self.sb = harness.Sandbox(self.label)
        except harness.HarnessError as e:
            self.fail(str(e))
        try:
            self.sb.start_server()
        except harness.HarnessError as e:
            self.sb.cleanup()
            self.fail(str(e))

    def tearDown(self):
        if self.sb:
            self.sb.cleanup()


class StandaloneTest(FreshServerCase):
    def test_apply_creates_examples_then_plan_in_sync(self):
        r = self.apply_ok()
        for name in EXAMPLE_ACCOUNTS:
            self.assertRegex(r.stdout, r"(?m)^\+ %s\b" % name, "apply reports creating %s" % name)
        keys = self.keys()
        self.assertEqual(set(keys), set(EXAMPLE_ACCOUNTS))
        for name, key in keys.items():
            self.assertRegex(key, r"^A[A-Z2-7]{55}$")
            self.assertEqual(self.claims_of(key).get("name"), name, "the resolver's JWT of %s is named %s" % (key, name))

        r = self.sb.accountd("plan", "--detailed-exitcode")
        self.assertExit(r, 0, "plan --detailed-exitcode right after apply")
        lines = self.plan_lines(r)
        self.assertEqual(len(lines), len(EXAMPLE_ACCOUNTS), self.out(r))
        for line in lines:
            self.assertTrue(line.startswith("= "), "in sync after apply: %r" % line)
        self.assertEqual(sorted(l.split()[1] for l in lines), sorted(EXAMPLE_ACCOUNTS))

    def jwt_dirs(self):
        return [d for d, _, _ in os.walk(self.sb.dir) if os.path.basename(d) == "jwt"]

    def test_damaged_jwt_of_a_created_account_is_pushed_again(self):
        """Convergence seed 1201: the server was SIGKILLed while it wrote APP's JWT, and
        its resolver then listed APP with 0 bytes. The daemon refused the whole
        CLAIMS.PACK on every pass and never converged. Now that entry is set apart
        and named, the rest of the pack is used, and an account this daemon created
        (its seed in state_dir) is pushed whole again under the same key."""
        self.apply_ok()
        keys = self.keys()
        app = keys["APP"]

        def damage():
            for d in self.jwt_dirs():
                with open(os.path.join(d, app + ".jwt"), "w"):
                    pass
        self.sb.restart_servers_with(while_stopped=damage)
        r = self.sb.accountd("apply")
        self.assertExit(r, 0, "apply with APP's JWT damaged on the server")
        if self.sb.server_version() < (2, 10, 0):
            # 2.9 lists the empty file in CLAIMS.PACK; the newer servers of the
            # matrix leave it out, and the account is simply missing there.
            self.assertIn("account %s: a server's resolver holds a damaged JWT: JWT of %s has 0 bytes" % (app, app),
                          r.stderr)
            self.assertIn("a server's JWT of account %s is damaged" % app, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r"(?m)^\+ APP\b", "APP pushed whole again")
        self.assertEqual(self.keys(), keys, "no account under a new key")
        claims = self.claims_of(app)
        self.assertEqual(claims.get("name"), "APP")
        self.assertEqual(claims["nats"]["limits"].get("mem_storage"),
                         EXAMPLE_APP_LIMITS["max_memory"], claims)
        r = self.sb.accountd("plan", "--detailed-exitcode")
        self.assertExit(r, 0, "plan after the repair")

    def test_damaged_jwt_of_an_unknown_account_holds_back_creates(self):
        """A damaged JWT whose key this daemon did not create may be any account: its
        name cannot be read. A declared account that is nowhere else is then not
        created (it could be that one, and a second key for a name is worse than a
        late create); the other accounts are still kept in sync."""
        self.apply_ok()
        stranger = "A" + "D" * 55
        self.sb.planted.add(stranger)

        def damage():
            for d in self.jwt_dirs():
                with open(os.path.join(d, stranger + ".jwt"), "w") as f:
                    f.write("not a JWT")
        self.sb.restart_servers_with(while_stopped=damage)
        text = self.sb.read("accounts.yaml")
        self.sb.write_accounts(text + "  NEWCOMER:\n    jetstream:\n      max_streams: 3\n")
        r = self.sb.accountd("apply")
        self.assertNotEqual(r.returncode, 0, self.out(r))
        self.assertIn("NEWCOMER", r.stdout + r.stderr)
        self.assertIn("not created: a server's resolver holds a damaged JWT of account %s" % stranger,
                      r.stdout + r.stderr)
        self.assertNotIn("NEWCOMER", self.keys())
        self.assertEqual(set(self.keys()), set(EXAMPLE_ACCOUNTS))
        for line in self.plan_lines(self.sb.accountd("plan")):
            if "NEWCOMER" not in line:
                self.assertTrue(line.startswith("= "), line)

    def test_plan_json_shape(self):
        r, doc = self.sb.plan_json()
        self.assertExit(r, 0, "plan --json before apply")
        self.check_plan_shape(doc)
        self.assertEqual({a["name"]: a["action"] for a in doc["accounts"]}, {n: "create" for n in EXAMPLE_ACCOUNTS})
        app = next(a for a in doc["accounts"] if a["name"] == "APP")
        changes = {c["field"]: c["new"] for c in app["changes"]}
        self.assertEqual(changes.get("max_store"), 256 * MiB, app)
        self.assertEqual(changes.get("max_memory"), 64 * MiB, app)

        self.apply_ok()
        self.edit_accounts("max_store: 256MiB", "max_store: 1GiB")
        r, doc = self.sb.plan_json()
        self.assertExit(r, 0, "plan --json with a pending update")
        self.check_plan_shape(doc)
        by_name = {a["name"]: a for a in doc["accounts"]}
        self.assertEqual(by_name["APP"]["action"], "update")
        self.assertEqual(by_name["APP"]["changes"], [{"field": "max_store", "old": 256 * MiB, "new": GiB}])
        self.assertIsNone(by_name["APP"]["error"])
        self.assertEqual(by_name["ORDERS"]["action"], "unchanged")
        self.assertEqual(by_name["ORDERS"]["changes"], [])

        r = self.sb.accountd("plan", "--json", "--detailed-exitcode")
        self.assertExit(r, 2, "plan --detailed-exitcode with a pending change")
        self.check_plan_shape(json.loads(r.stdout))

        r = self.sb.accountd("apply", "--json")
        self.assertExit(r, 0, "apply --json")
        doc = json.loads(r.stdout)
        self.check_plan_shape(doc)
        self.assertEqual({a["name"]: a["action"] for a in doc["accounts"]}["APP"], "update")

    def check_plan_shape(self, doc):
        self.assertEqual(set(doc), {"accounts"}, doc)
        self.assertIsInstance(doc["accounts"], list)
        for a in doc["accounts"]:
            self.assertEqual(set(a), {"name", "key", "action", "changes", "warnings", "error"}, a)
            self.assertIsInstance(a["name"], str)
            self.assertTrue(a["key"] is None or re.fullmatch(r"A[A-Z2-7]{55}", a["key"]), a)
            self.assertIn(a["action"], ("create", "enable", "update", "disable", "unchanged", "error"))
            self.assertIsInstance(a["warnings"], list)
            for w in a["warnings"]:
                self.assertIsInstance(w, str)
            if a["action"] == "error":
                self.assertIsInstance(a["error"], str)
                self.assertTrue(a["error"])
            else:
                self.assertIsNone(a["error"], a)
            self.assertIsInstance(a["changes"], list)
            for c in a["changes"]:
                self.assertEqual(set(c), {"field", "old", "new"}, c)
                self.assertRegex(c["field"], r"^(R[1-5]\.)?[a-z_]+$")
                for v in (c["old"], c["new"]):
                    # sizes and counts are integers (-1 unlimited), max_bytes_required a boolean
                    if c["field"].endswith("max_bytes_required"):
                        self.assertIsInstance(v, bool, c)
                    else:
                        self.assertIs(type(v), int, c)
                        self.assertGreaterEqual(v, -1, c)

    def test_user_sees_declared_limits(self):
        self.apply_ok()
        app = self.sb.js_info(self.sb.user_creds("APP"))
        self.assertNotIn("error", app)
        self.assertEqual({k: js_limits(app)[k] for k in EXAMPLE_APP_LIMITS}, EXAMPLE_APP_LIMITS, app)

        orders = self.sb.js_info(self.sb.user_creds("ORDERS"))
        r1 = js_limits(orders, "R1")
        self.assertEqual((r1.get("max_memory"), r1.get("max_storage")), (32 * MiB, 128 * MiB), orders)

        r = self.sb.request(self.sb.user_creds("LEGACY"), "$JS.API.INFO", timeout_ms=1000)
        self.assertTrue(r.returncode != 0 or "error" in json.loads(r.stdout), "LEGACY has JetStream off: " + self.out(r))

    def test_state_dir_of_an_earlier_version_keeps_working(self):
        # Versions before the .seeds files kept one <KEY>.nk per created
        # account. Such a folder is read as it is, beside the .seeds files
        # written since, with no step to convert it.
        self.apply_ok()
        state = self.sb.path("state")
        created = harness.state_seeds(state)
        batches = [f for f in os.listdir(state) if f.endswith(".seeds")]
        self.assertEqual(len(batches), 1, "one file for the pass's creates: %s" % os.listdir(state))
        self.assertEqual({n: k for k, n in created.items()}, self.keys())
        # The folder as an earlier version would have left it.
        with open(os.path.join(state, batches[0])) as fh:
            records = [line.split(" ") for line in fh if not line.startswith("#")]
        for name, key, seed, _check in records:
            self.sb.write(os.path.join("state", key + ".nk"), "# nats-accountd: seed of account %s\n%s\n" % (name, seed),
                          0o600)
        os.unlink(os.path.join(state, batches[0]))
        self.assertEqual(harness.state_seeds(state), created)
        r = self.sb.accountd("plan", "--detailed-exitcode")
        self.assertExit(r, 0, "plan over a folder of .nk files")

        # A new account's seed goes into a .seeds file; the .nk files stay.
        self.edit_accounts("  LEGACY:", "  FRESH:\n    jetstream: enabled\n  LEGACY:")
        r = self.apply_ok()
        now = harness.state_seeds(state)
        fresh = [k for k, n in now.items() if n == "FRESH"]
        self.assertEqual(len(fresh), 1, now)
        self.assertEqual({k: n for k, n in now.items() if n != "FRESH"}, created)
        self.assertTrue(os.path.exists(os.path.join(state, fresh[0] + ".seeds")), os.listdir(state))
        self.assertEqual(self.keys()["FRESH"], fresh[0])

        # user-creds signs with a seed of either layout: its users get in.
        for name in ("APP", "FRESH"):
            info = self.sb.js_info(self.sb.user_creds(name))
            self.assertNotIn("error", info, name)

        # A second key for FRESH in a .nk file: ambiguous across the layouts.
        other = self.sb.probe("gen-seed", "account").stdout.strip()
        path = self.sb.write("other.nk", other + "\n", 0o600)
        other_key = self.sb.probe("pubkey-of-seed", path).stdout.strip()
        self.sb.write(os.path.join("state", other_key + ".nk"), "# nats-accountd: seed of account FRESH\n%s\n" % other,
                      0o600)
        r = self.sb.accountd("user-creds", "FRESH", "tester")
        self.assertNotEqual(r.returncode, 0, self.out(r))
        self.assertIn("seeds of two accounts named FRESH", r.stderr)
        self.assertIn("%s (%s.seeds)" % (fresh[0], fresh[0]), r.stderr)
        self.assertIn("%s (%s.nk)" % (other_key, other_key), r.stderr)
        for _name, _key, seed, _check in records:
            self.assertNotIn(seed[2:20], r.stderr)
        self.assertNotIn(other[2:20], r.stderr)

    def test_limit_update_is_applied_and_iat_rises(self):
        self.apply_ok()
        key = self.keys()["APP"]
        iat0 = self.claims_of(key)["iat"]
        creds = self.sb.user_creds("APP")

        self.edit_accounts("max_store: 256MiB", "max_store: 1GiB")
        r = self.sb.accountd("plan")
        self.assertExit(r, 0, "plan")
        app_line = [l for l in self.plan_lines(r) if l.split()[1] == "APP"]
        self.assertEqual(len(app_line), 1, self.out(r))
        self.assertTrue(app_line[0].startswith("~ APP"), app_line)
        self.assertIn("max_store 256MiB -> 1GiB", app_line[0])
        self.assertNotIn("max_memory", app_line[0], "only the changed limit is listed")
        self.assertExit(self.sb.accountd("plan", "--detailed-exitcode"), 2, "plan --detailed-exitcode, change pending")

        self.apply_ok()
        self.assertEqual(js_limits(self.sb.js_info(creds))["max_storage"], GiB)
        claims1 = self.claims_of(key)
        self.assertEqual(claims1["nats"]["limits"]["disk_storage"], GiB)
        self.assertGreater(claims1["iat"], iat0, "iat rises with each apply")

        self.edit_accounts("max_streams: 10", "max_streams: 20")
        self.apply_ok()
        info = self.sb.js_info(creds)
        self.assertEqual((js_limits(info)["max_streams"], js_limits(info)["max_storage"]), (20, GiB))
        self.assertGreater(self.claims_of(key)["iat"], claims1["iat"], "iat rises with each apply")
        self.assertExit(self.sb.accountd("plan", "--detailed-exitcode"), 0, "in sync after the second apply")

    def test_disable_then_enable_keeps_stream_data(self):
        self.apply_ok()
        creds = self.sb.user_creds("APP")
        cfg = {"name": "KEEP", "subjects": ["keep.>"], "storage": "file", "max_bytes": 8 * MiB}
        created = self.sb.request_json(creds, "$JS.API.STREAM.CREATE.KEEP", json.dumps(cfg))
        self.assertNotIn("error", created)
        r = self.sb.probe("publish-acked", creds, self.sb.url, "keep.x", 5)
        self.assertExit(r, 0, "5 acked publishes")

        self.edit_accounts(
            "  APP:\n    jetstream:\n      max_memory: 64MiB\n      max_store: 256MiB\n      max_streams: 10\n      max_consumers: 100\n",
            "  APP:\n    jetstream: disabled\n",
        )
        r = self.sb.accountd("plan")
        self.assertRegex(r.stdout, r"(?m)^- APP\b", self.out(r))
        self.apply_ok()
        r = self.sb.request(creds, "$JS.API.INFO", timeout_ms=1000)
        self.assertTrue(
            r.returncode != 0 or "error" in json.loads(r.stdout), "JetStream must be off for APP now: " + self.out(r)
        )
        self.assertExit(self.sb.accountd("plan", "--detailed-exitcode"), 0, "in sync while disabled")

        self.edit_accounts(
            "  APP:\n    jetstream: disabled\n",
            "  APP:\n    jetstream:\n      max_memory: 64MiB\n      max_store: 256MiB\n      max_streams: 10\n      max_consumers: 100\n",
        )
        r = self.sb.accountd("plan")
        self.assertRegex(r.stdout, r"(?m)^\^ APP\b", self.out(r))
        self.apply_ok()

        def five_messages():
            r = self.sb.request(creds, "$JS.API.STREAM.INFO.KEEP", timeout_ms=1000)
            if r.returncode != 0:
                return None
            doc = json.loads(r.stdout)
            return doc if (doc.get("state") or {}).get("messages") == 5 else None

        try:
            poll(five_messages, 10, "stream KEEP back with its 5 messages", interval=0.2)
        except harness.HarnessError as e:
            self.fail("%s; last STREAM.INFO: %s" % (e, self.out(self.sb.request(creds, "$JS.API.STREAM.INFO.KEEP"))))
        self.assertEqual(js_limits(self.sb.js_info(creds))["max_storage"], 256 * MiB)

    def test_many_accounts_loaded_one_still_checked(self):
        # Past a few accounts, INFO is asked only of those some server has
        # loaded (one SERVER.PING.ACCOUNTZ per server says which): a loaded
        # account the server cannot apply must still be caught, both when apply
        # verifies its pushes and when plan looks at the servers' state.
        def accounts(store, app_memory):
            text = "accounts:\n  APP:\n    jetstream:\n      max_memory: %s\n      max_store: %s\n" % (app_memory, store)
            for i in range(40):
                text += "  ACC%02d:\n    jetstream:\n      max_memory: 1MiB\n      max_store: %s\n" % (i, store)
            return text

        self.sb.write_accounts(accounts("1MiB", "1MiB"))
        self.apply_ok()
        creds = self.sb.user_creds("APP")
        self.assertNotIn("error", self.sb.js_info(creds))  # APP is now loaded on the server

        # More memory than the server has (max_mem 1G): the JWT is stored, but
        # the server cannot apply it and reports the account incomplete.
        self.sb.write_accounts(accounts("2MiB", "2GiB"))
        r = self.sb.accountd("apply", "--json")
        self.assertExit(r, 1, "apply with one account the server cannot apply")
        doc = {a["name"]: a for a in json.loads(r.stdout)["accounts"]}
        self.assertEqual(doc["APP"]["action"], "error", doc["APP"])
        self.assertIn("could not apply", doc["APP"]["error"])
        self.assertEqual({a["action"] for n, a in doc.items() if n != "APP"}, {"update"})

        r, plan = self.sb.plan_json()
        states = {a["name"]: a for a in plan["accounts"]}
        self.assertEqual(states["APP"]["action"], "update", states["APP"])
        self.assertTrue(any("completely" in w for w in states["APP"]["warnings"]), states["APP"])
        self.assertEqual({a["action"] for n, a in states.items() if n != "APP"}, {"unchanged"})

    def test_export_added_by_another_tool_survives_apply(self):
        self.apply_ok()
        key = self.keys()["APP"]
        current = self.sb.write("app.jwt", self.sb.lookup_jwt(key) + "\n")
        r = self.sb.probe("resign-add-export", self.sb.signer, current, "foreign.events")
        self.assertExit(r, 0, "resign-add-export")
        foreign = r.stdout.strip()
        self.sb.push_jwt(key, foreign)
        foreign_claims = self.claims_of(key)
        self.assertIn({"name": "foreign.events", "subject": "foreign.events", "type": "stream"},
                      foreign_claims["nats"].get("exports", []))
        self.assertExit(self.sb.accountd("plan", "--detailed-exitcode"), 0, "an export is not drift")

        self.edit_accounts("max_store: 256MiB", "max_store: 1GiB")
        self.apply_ok()
        after = self.claims_of(key)
        self.assertEqual(after["nats"].get("exports"), foreign_claims["nats"]["exports"], "the export survived")
        self.assertEqual(after["nats"]["limits"]["disk_storage"], GiB)
        self.assertGreater(after["iat"], foreign_claims["iat"])
        # Everything but the JetStream limit, iat, jti is as the other tool left it.
        for c in (after, foreign_claims):
            for k in ("iat", "jti"):
                c.pop(k)
            c["nats"]["limits"].pop("disk_storage")
        self.assertEqual(after, foreign_claims)

    def test_mappings_a_newer_server_refuses(self):
        # nats-io/jwt accepts a mapping with the same destination twice; the
        # server discards it when it installs the account, and from 2.15.1 on
        # refuses such a JWT on CLAIMS.UPDATE. A resolver can hold one from
        # before an upgrade: our push keeps the claims we do not manage, so a
        # 2.15.1+ server refuses it, and apply must say so, with the server's reason.
        self.apply_ok()
        key = self.keys()["APP"]
        current = self.sb.write("app.jwt", self.sb.lookup_jwt(key) + "\n")
        mappings = {"app.in": [{"subject": "app.out", "weight": 50}, {"subject": "app.out", "weight": 50}]}
        r = self.sb.probe("resign-set", self.sb.signer, current, "mappings", json.dumps(mappings))
        self.assertExit(r, 0, "resign-set")
        foreign = r.stdout.strip()

        def upgrade_with_it_stored():
            self.sb.write(os.path.join("jwt", key + ".jwt"), foreign)

        self.sb.restart_servers_with(while_stopped=upgrade_with_it_stored)
        self.assertEqual(self.sb.lookup_jwt(key), foreign)
        self.edit_accounts("max_store: 256MiB", "max_store: 1GiB")
        r = self.sb.accountd("apply")
        if self.sb.server_version() >= (2, 15, 1):
            self.assertExit(r, 1, "apply of an account whose mappings the server refuses")
            self.assertRegex(r.stdout, r"(?m)^! APP\b.*jwt validation failed.*duplicate entry", self.out(r))
            self.assertEqual(self.sb.lookup_jwt(key), foreign, "nothing changed on the server")
        else:
            self.assertExit(r, 0, "apply")
            after = self.claims_of(key)
            self.assertEqual(after["nats"]["mappings"], mappings, "the mappings are kept as they were")
            self.assertEqual(after["nats"]["limits"]["disk_storage"], GiB)

    def test_untrusted_signing_key_is_refused(self):
        self.apply_ok()
        key = self.keys()["APP"]
        before = self.sb.lookup_jwt(key)
        r = self.sb.probe("gen-seed", "operator")
        self.assertExit(r, 0, "gen-seed operator")
        rogue = self.sb.write("rogue.nk", r.stdout, 0o600)
        rogue_pub = self.sb.probe("pubkey-of-seed", rogue).stdout.strip()
        self.assertRegex(rogue_pub, r"^O[A-Z2-7]{55}$")
        self.sb.set_setting("signing_key", "rogue.nk")

        self.edit_accounts("max_store: 256MiB", "max_store: 1GiB")
        r = self.sb.accountd("apply")
        self.assertNotEqual(r.returncode, 0, "apply with an untrusted key: " + self.out(r))
        self.assertIn(rogue_pub, r.stdout + r.stderr, "the message names the key")
        self.assertEqual(self.sb.lookup_jwt(key), before, "the resolver's JWT is unchanged")
        self.assertEqual(js_limits(self.sb.js_info(self.sb.user_creds("APP")))["max_storage"], 256 * MiB)

    def test_untrusted_signing_key_creates_nothing(self):
        before = self.sb.gather_json("$SYS.REQ.CLAIMS.LIST", 1)[0]["data"]
        r = self.sb.probe("gen-seed", "operator")
        self.sb.write("rogue.nk", r.stdout, 0o600)
        self.sb.set_setting("signing_key", "rogue.nk")
        r = self.sb.accountd("apply")
        self.assertNotEqual(r.returncode, 0, "apply with an untrusted key: " + self.out(r))
        after = self.sb.gather_json("$SYS.REQ.CLAIMS.LIST", 1)[0]["data"]
        self.assertEqual(sorted(after), sorted(before), "no account JWT was pushed (only the system account's)")

    def test_account_removed_from_file_is_left_untouched(self):
        self.apply_ok()
        keys = self.keys()
        orders_before = self.sb.lookup_jwt(keys["ORDERS"])
        legacy_before = self.sb.lookup_jwt(keys["LEGACY"])
        orders_creds = self.sb.user_creds("ORDERS")

        self.sb.write_accounts(APP_ONLY.format(store="1GiB", streams=10))
        r = self.apply_ok()
        self.assertNotRegex(r.stdout, r"(?m)^. (ORDERS|LEGACY)\b", "unlisted accounts are not managed")
        self.assertEqual(self.sb.lookup_jwt(keys["ORDERS"]), orders_before)
        self.assertEqual(self.sb.lookup_jwt(keys["LEGACY"]), legacy_before)
        self.assertEqual(js_limits(self.sb.js_info(orders_creds), "R1").get("max_storage"), 128 * MiB)
        self.assertEqual(self.claims_of(keys["APP"])["nats"]["limits"]["disk_storage"], GiB)

    def test_pin_to_unknown_account_key_is_an_error(self):
        r = self.sb.probe("gen-seed", "account")
        self.assertExit(r, 0, "gen-seed account")
        seed = self.sb.write("ghost.nk", r.stdout, 0o600)
        ghost = self.sb.probe("pubkey-of-seed", seed).stdout.strip()
        self.assertRegex(ghost, r"^A[A-Z2-7]{55}$")
        self.sb.write_accounts(APP_ONLY.format(store="256MiB", streams=10) + "  GHOST:\n    key: %s\n    jetstream: enabled\n" % ghost)
        self.assertExit(self.sb.accountd("check"), 0, "a valid pinned key passes check")

        for args in (("plan",), ("plan", "--detailed-exitcode"), ("apply",)):
            r = self.sb.accountd(*args)
            self.assertExit(r, 1, " ".join(args))
            ghost_lines = [l for l in r.stdout.splitlines() if l.startswith("! GHOST")]
            self.assertEqual(len(ghost_lines), 1, self.out(r))
            self.assertIn(ghost, ghost_lines[0], "the error names the pinned key")

        r, doc = self.sb.plan_json()
        self.assertExit(r, 1, "plan --json")
        g = next(a for a in doc["accounts"] if a["name"] == "GHOST")
        self.assertEqual(g["action"], "error")
        self.assertTrue(g["error"])
        self.assertIsNone(self.sb.lookup_jwt(ghost), "no account was made up for the pinned key")
        # The error of one account does not hold back the others.
        self.assertEqual(js_limits(self.sb.js_info(self.sb.user_creds("APP")))["max_storage"], 256 * MiB)

    def test_stopped_server_exits_69(self):
        url = self.sb.url
        self.sb.stop()
        for args in (("plan",), ("apply",)):
            r = self.sb.accountd(*args, timeout=60)  # gives up by itself: no hang
            self.assertExit(r, 69, " ".join(args) + " with the server stopped")
            self.assertIn(url.split("//")[1], r.stderr, "the message names the server")
            self.assertRegex(r.stderr, r"(?i)connect|unreachable|no server", "the message says what failed")


APP_LIMITS = """accounts:
  APP:
    jetstream:
      max_memory: 64MiB
      max_store: 256MiB
    limits:
{limits}
  ORDERS:
    jetstream:
      tiers:
        R1: {{ max_memory: 32MiB, max_store: 128MiB }}
"""


def limits_file(**limits):
    return APP_LIMITS.format(limits="".join("      %s: %s\n" % kv for kv in limits.items()) or "      {}\n")


class LimitsTest(FreshServerCase):
    """Account limits besides JetStream (issue 11) on a fresh standalone server per test."""

    label = "limits"

    def setUp(self):
        self.holders = []
        super().setUp()

    def tearDown(self):
        for h in self.holders:
            h.close()
        super().tearDown()

    def hold(self, creds, *subjects, url=None):
        h = harness.Holder(self.sb, creds, subjects, url)
        self.holders.append(h)
        return h

    def app_limits(self):
        return self.claims_of(self.keys()["APP"])["nats"]["limits"]

    def server_log_says(self, text, times):
        """The server's reason for closing connections: in its -ERR too, which cnats may lose to the close."""
        poll(lambda: self.sb.servers[0].log_tail(500).lower().count(text.lower()) >= times, 10,
             "%d x %r in the server's log" % (times, text))

    def info(self, key):
        return self.sb.gather_json("$SYS.REQ.ACCOUNT.%s.INFO" % key, len(self.sb.servers))

    # ------------------------------------------------------------------

    def test_connection_limit_refuses_the_third_then_raising_lets_it_in(self):
        self.sb.write_accounts(limits_file(max_connections=2))
        r = self.apply_ok()
        self.assertRegex(r.stdout, r"(?m)^\+ APP .*max_connections unlimited -> 2", self.out(r))
        lim = self.app_limits()
        self.assertEqual(lim["conn"], 2)
        # Omitted limits are written out as -1: absent would mean 0 to nats-server.
        for claim in ("subs", "payload", "leaf", "data", "imports", "exports"):
            self.assertEqual(lim[claim], -1, claim)
        pid = self.sb.servers[0].proc.pid

        creds = self.sb.user_creds("APP")
        first, second = self.hold(creds), self.hold(creds)
        self.assertTrue(first.connected and second.connected, (first.first, second.first))
        third = self.hold(creds)
        self.assertFalse(third.connected, "a third connection with max_connections 2")
        self.assertIn("maximum account active connections exceeded", third.error)

        self.edit_accounts("      max_connections: 2\n", "      max_connections: 3\n")
        r = self.sb.accountd("plan")
        self.assertRegex(r.stdout, r"(?m)^~ APP  max_connections 2 -> 3$", self.out(r))
        self.assertNotIn("warning", r.stdout, "raising a limit warns of nothing")
        self.apply_ok()
        third = poll(lambda: (lambda h: h if h.connected else None)(self.hold(creds)), 10, "a third connection")
        self.assertTrue(third.connected)
        self.assertEqual(self.sb.servers[0].proc.pid, pid, "no restart")
        for h in (first, second):
            self.assertIsNone(h.closed_by_server(0.2), "the connections there stay")
        self.assertExit(self.sb.accountd("plan", "--detailed-exitcode"), 0, "in sync")

    def test_max_payload(self):
        self.sb.write_accounts(limits_file(max_payload="1KiB"))
        self.apply_ok()
        self.assertEqual(self.app_limits()["payload"], 1024)
        creds = self.sb.user_creds("APP")
        self.assertExit(self.sb.probe("publish", creds, self.sb.url, "p.ok", 1024), 0, "a message of max_payload")
        r = self.sb.probe("publish", creds, self.sb.url, "p.big", 1025)
        self.assertExit(r, 1, "a message above max_payload")
        # Refused by the server (its log says so), or already by cnats once the
        # server's INFO told it the account's max_payload: either way for that reason.
        if "maximum payload" not in r.stderr.lower():
            self.server_log_says("maximum payload exceeded: 1025 vs 1024", 1)

        self.edit_accounts("      max_payload: 1KiB\n", "      max_payload: 4KiB\n")
        r = self.apply_ok()
        self.assertIn("max_payload 1KiB -> 4KiB", r.stdout)
        self.assertExit(self.sb.probe("publish", creds, self.sb.url, "p.big", 4096), 0, "4KiB after raising it")

    def test_warning_before_lowering_below_current_connections(self):
        self.sb.write_accounts(limits_file(max_connections=10))
        self.apply_ok()
        creds = self.sb.user_creds("APP")
        held = [self.hold(creds) for _ in range(3)]
        self.assertTrue(all(h.connected for h in held))

        self.edit_accounts("      max_connections: 10\n", "      max_connections: 1\n")
        r = self.sb.accountd("plan")
        self.assertExit(r, 0, "plan")
        self.assertRegex(r.stdout, r"(?m)^~ APP  max_connections 10 -> 1$")
        self.assertRegex(r.stdout, r"(?m)^    warning: max_connections 1 is below the 3 connections the account has now; "
                                   r"the servers will close at least 2 of them$", self.out(r))
        _, doc = self.sb.plan_json()
        app = next(a for a in doc["accounts"] if a["name"] == "APP")
        self.assertEqual(app["changes"], [{"field": "max_connections", "old": 10, "new": 1}])
        self.assertTrue(any("below the 3 connections" in w for w in app["warnings"]), app)

        self.apply_ok()
        # Which ones differs between server versions (2.10 keeps the newest, 2.11+ the oldest).
        reasons = [h.closed_by_server(5) for h in held]
        closed = [x for x in reasons if x]
        self.assertEqual(len(closed), 2, "the server closed two: %s" % reasons)
        # The reason comes in the server's -ERR, which cnats may lose to the close that follows
        # (2.11+ do not log it either): then the plain close is all there is to see.
        for x in closed:
            self.assertRegex(x, r"^(maximum account active connections exceeded|Connection Closed)$")

    def test_warning_before_lowering_max_subscriptions(self):
        self.sb.write_accounts(limits_file(max_subscriptions=100))
        self.apply_ok()
        creds = self.sb.user_creds("APP")
        busy = self.hold(creds, "s.1", "s.2", "s.3", "s.4")
        calm = self.hold(creds, "t.1")
        self.assertTrue(busy.connected and calm.connected)

        self.edit_accounts("      max_subscriptions: 100\n", "      max_subscriptions: 3\n")
        r = self.sb.accountd("plan")
        self.assertRegex(r.stdout, r"(?m)^~ APP  max_subscriptions 100 -> 3$")
        self.assertRegex(r.stdout, r"(?m)^    warning: max_subscriptions 3: a connection of the account to server N[A-Z2-7]{55} "
                                   r"has 4 subscriptions; the servers close every connection with 3 or more$", self.out(r))
        self.apply_ok()
        self.assertIsNotNone(busy.closed_by_server(10), "the connection with 4 subscriptions is closed")
        self.assertIsNone(calm.closed_by_server(0.5), "the one with 1 stays")
        self.server_log_says("maximum subscriptions exceeded", 1)

        # Not lowered any more: no warning, and no CONNZ needed.
        self.edit_accounts("      max_subscriptions: 3\n", "      max_subscriptions: 50\n")
        r = self.sb.accountd("plan")
        self.assertNotIn("warning", r.stdout, self.out(r))

    def test_limits_only_change_keeps_every_other_claim(self):
        self.sb.write_accounts(limits_file(max_connections=100))
        self.apply_ok()
        keys = self.keys()
        key = keys["APP"]
        seed = self.sb.write("app-signing.nk", self.sb.probe("gen-seed", "account").stdout, 0o600)
        signing_key = self.sb.probe("pubkey-of-seed", seed).stdout.strip()
        current = self.sb.write("app.jwt", self.sb.lookup_jwt(key) + "\n")
        # Another tool adds an import (of an export of ORDERS), two exports and a signing key.
        orders = self.sb.write("orders.jwt", self.sb.lookup_jwt(keys["ORDERS"]) + "\n")
        r = self.sb.probe("resign-add-export", self.sb.signer, orders, "orders.>")
        self.assertExit(r, 0, "resign-add-export")
        self.sb.push_jwt(keys["ORDERS"], r.stdout.strip())
        edit = {
            "imports": [{"name": "orders", "subject": "orders.>", "account": keys["ORDERS"], "type": "stream"}],
            "exports": [{"name": "a", "subject": "app.a", "type": "stream"},
                        {"name": "b", "subject": "app.b.>", "type": "service"}],
            "signing_keys": [signing_key],
        }
        r = self.sb.probe("resign-merge", self.sb.signer, current, json.dumps(edit))
        self.assertExit(r, 0, "resign-merge")
        self.sb.push_jwt(key, r.stdout.strip())
        before = self.claims_of(key)
        self.assertEqual(before["nats"]["signing_keys"], [signing_key])
        self.assertExit(self.sb.accountd("plan", "--detailed-exitcode"), 0, "imports and exports are not drift")

        self.edit_accounts("      max_connections: 100\n",
                           "      max_connections: 50\n      max_subscriptions: 1000\n      max_exports: 2\n")
        r = self.apply_ok()
        self.assertRegex(r.stdout, r"(?m)^~ APP  max_connections 100 -> 50, max_subscriptions unlimited -> 1000, "
                                   r"max_exports unlimited -> 2$")
        after = self.claims_of(key)
        self.assertEqual(after["nats"]["limits"]["conn"], 50)
        self.assertEqual(after["nats"]["limits"]["subs"], 1000)
        self.assertEqual(after["nats"]["limits"]["exports"], 2)
        self.assertEqual(after["nats"]["limits"]["mem_storage"], 64 * MiB)
        self.assertGreater(after["iat"], before["iat"])
        for c in (after, before):
            for k in ("iat", "jti"):
                c.pop(k)
            for k in ("conn", "subs", "exports"):
                c["nats"]["limits"].pop(k)
        self.assertEqual(after, before, "everything but those three limits is as it was")
        # The server applied it: JetStream limits untouched, the account complete.
        app = self.sb.js_info(self.sb.user_creds("APP"))
        self.assertEqual(js_limits(app)["max_storage"], 256 * MiB)
        self.assertTrue(all(rep["data"]["complete"] for rep in self.info(key) if rep.get("data")))

        # Fewer exports allowed than the JWT holds: the servers would refuse the JWT, so it is not sent.
        jwt_before = self.sb.lookup_jwt(key)
        self.edit_accounts("      max_exports: 2\n", "      max_exports: 1\n")
        for args in (("plan",), ("apply",)):
            r = self.sb.accountd(*args)
            self.assertExit(r, 1, " ".join(args))
            self.assertRegex(r.stdout, r"(?m)^! APP  max_exports 1 is below the 2 exports the account's JWT holds", self.out(r))
            self.assertRegex(r.stdout, r"(?m)^= ORDERS", "the other accounts go on")
        self.assertEqual(self.sb.lookup_jwt(key), jwt_before)

    def test_warning_before_lowering_a_tier_below_its_usage(self):
        self.sb.write_accounts(limits_file(max_connections=10))
        self.apply_ok()
        creds = self.sb.user_creds("ORDERS")
        cfg = {"name": "T1", "subjects": ["t1.>"], "storage": "file", "num_replicas": 1}
        self.assertNotIn("error", self.sb.request_json(creds, "$JS.API.STREAM.CREATE.T1", json.dumps(cfg)))
        self.assertExit(self.sb.probe("publish-acked", creds, self.sb.url, "t1.x", 20), 0, "20 acked publishes")
        used = self.sb.request_json(creds, "$JS.API.STREAM.INFO.T1")["state"]["bytes"]
        self.assertGreater(used, 100)

        self.edit_accounts("R1: { max_memory: 32MiB, max_store: 128MiB }", "R1: { max_memory: 32MiB, max_store: 100 }")
        r = self.sb.accountd("plan")
        self.assertRegex(r.stdout, r"(?m)^~ ORDERS  R1\.max_store 128MiB -> 100$", self.out(r))
        self.assertIn("    warning: R1.max_store 100 is below current usage %d of the account's R1 streams\n" % used,
                      r.stdout)
        # Enough room: no warning.
        self.edit_accounts("max_store: 100 }", "max_store: %d }" % used)
        r = self.sb.accountd("plan")
        self.assertRegex(r.stdout, r"(?m)^~ ORDERS  R1\.max_store 128MiB -> %d$" % used, self.out(r))
        self.assertNotIn("warning", r.stdout)

    def test_limits_on_the_system_account_are_refused(self):
        sys_key = self.sb.gather_json("$SYS.REQ.SERVER.PING.VARZ", 1)[0]["data"]["system_account"]
        sys_jwt = self.sb.lookup_jwt(sys_key)
        self.sb.write_accounts("accounts:\n  SYS:\n    limits:\n      max_connections: 1\n")
        self.assertExit(self.sb.accountd("check"), 0, "check cannot know the system account (no server contact)")
        for args in (("plan",), ("apply",)):
            r = self.sb.accountd(*args)
            self.assertExit(r, 1, " ".join(args))
            self.assertRegex(r.stdout, r"(?m)^! SYS  .*accounts.yaml:2:3: SYS is the system account \(system_account of "
                                       r"server [^)]+\); its limits are not managed, and `limits` there could lock out "
                                       r"the system user nats-accountd itself connects as", self.out(r))
        self.assertEqual(self.sb.lookup_jwt(sys_key), sys_jwt)
        # Pinned by key under another name: the same.
        self.sb.write_accounts("accounts:\n  OPS:\n    key: %s\n    limits: {}\n" % sys_key)
        r = self.sb.accountd("plan")
        self.assertExit(r, 1, "plan")
        self.assertIn("OPS is the system account", r.stdout)
        self.assertEqual(self.sb.lookup_jwt(sys_key), sys_jwt)


class ClusterTest(OperatorCase):
    """Three servers c1..c3 on loopback, one sandbox for the class."""

    TIERS = """accounts:
  APP:
    jetstream:
      max_memory: 64MiB
      max_store: 256MiB
  ORDERS:
    jetstream:
      tiers:
        R1: {{ max_memory: 32MiB, max_store: 128MiB, max_streams: 5 }}
        R3: {{ max_memory: 16MiB, max_store: {r3_store}, max_streams: 3 }}
"""

    @classmethod
    def setUpClass(cls):
        try:
            cls.sb = harness.Cluster(3)
        except harness.HarnessError as e:
            raise AssertionError(str(e))
        try:
            cls.sb.start_cluster()
        except harness.HarnessError as e:
            logs = cls.sb.server_logs()
            cls.sb.cleanup()
            raise AssertionError("%s\n%s" % (e, logs))

    @classmethod
    def tearDownClass(cls):
        if cls.sb:
            cls.sb.cleanup()

    def server_views(self, key):
        """$SYS.REQ.ACCOUNT.<key>.INFO from every server: server name -> data."""
        replies = self.sb.gather_json("$SYS.REQ.ACCOUNT.%s.INFO" % key, 3)
        return {r["server"]["name"]: r.get("data") for r in replies}

    def check_tiers_everywhere(self, key, creds, r3_store):
        want = {"R1": (32 * MiB, 128 * MiB, 5), "R3": (16 * MiB, r3_store, 3)}
        # A server loads an account when a client connects to it there: a user on each
        # server loads it everywhere ($JS.API.INFO itself is answered by the meta leader,
        # which under load may learn of the account a moment after every server has
        # confirmed its JWT: 10039 "JetStream not enabled for account" until then).
        def js_info_of(url):
            info = self.sb.js_info(creds, url=url)
            return None if (info.get("error") or {}).get("err_code") == 10039 else info

        for srv in self.sb.servers:
            try:
                info = poll(lambda: js_info_of(srv.url), 10, "JetStream enabled for the account via " + srv.url,
                            interval=0.2)
            except harness.HarnessError:
                info = self.sb.js_info(creds, url=srv.url)
            for tier, (mem, store, streams) in want.items():
                lim = js_limits(info, tier)
                self.assertEqual((lim.get("max_memory"), lim.get("max_storage"), lim.get("max_streams")),
                                 (mem, store, streams), "$JS.API.INFO via %s, tier %s: %s" % (srv.url, tier, info))
        views = self.server_views(key)
        self.assertEqual(set(views), {"c1", "c2", "c3"}, views)
        for name, data in views.items():
            self.assertIsNotNone(data, "%s has the account loaded" % name)
            self.assertTrue(data.get("jetstream_enabled"), "%s applied JetStream: %s" % (name, data))
            self.assertTrue(data.get("complete"), "%s: %s" % (name, data))
            tiered = data["decoded_jwt"]["nats"]["limits"].get("tiered_limits", {})
            for tier, (mem, store, streams) in want.items():
                self.assertEqual((tiered[tier]["mem_storage"], tiered[tier]["disk_storage"], tiered[tier]["streams"]),
                                 (mem, store, streams), "%s tier %s" % (name, tier))

    def test_1_tiers_applied_on_all_servers(self):
        self.sb.write_accounts(self.TIERS.format(r3_store="64MiB"))
        r = self.apply_ok()
        self.assertRegex(r.stdout, r"(?m)^\+ ORDERS\b")
        r = self.sb.accountd("plan", "--detailed-exitcode")
        self.assertExit(r, 0, "plan right after apply on the cluster")
        for line in self.plan_lines(r):
            self.assertTrue(line.startswith("= "), line)

        key = self.keys()["ORDERS"]
        creds = self.sb.user_creds("ORDERS")
        self.check_tiers_everywhere(key, creds, 64 * MiB)

        # The R3 tier is usable: a replicated stream lands in it.
        cfg = {"name": "R3S", "subjects": ["r3s.>"], "storage": "file", "num_replicas": 3, "max_bytes": 4 * MiB}

        def create():
            doc = self.sb.request_json(creds, "$JS.API.STREAM.CREATE.R3S", json.dumps(cfg), timeout_ms=5000)
            # 10005 "no suitable peers for placement, peer offline": the meta leader
            # has not yet had every peer's first statsz (2.10.23 a moment after start).
            return None if (doc.get("error") or {}).get("err_code") == 10005 else doc

        created = poll(create, 15, "the cluster to place an R3 stream", interval=0.3)
        self.assertNotIn("error", created)
        self.assertExit(self.sb.probe("publish-acked", creds, self.sb.servers[2].url, "r3s.a", 3), 0, "acked R3 publishes")

        def r3_counted():
            info = self.sb.js_info(creds)
            return info if (info.get("tiers") or {}).get("R3", {}).get("streams") == 1 else None

        poll(r3_counted, 10, "the R3 stream counted in tier R3", interval=0.2)

    def test_2_tier_update_reaches_all_servers(self):
        self.sb.write_accounts(self.TIERS.format(r3_store="64MiB"))
        self.apply_ok()
        key = self.keys()["ORDERS"]
        iat0 = self.claims_of(key)["iat"]
        self.sb.write_accounts(self.TIERS.format(r3_store="96MiB"))
        r = self.sb.accountd("plan")
        self.assertRegex(r.stdout, r"(?m)^~ ORDERS .*R3\.max_store 64MiB -> 96MiB", self.out(r))
        self.apply_ok()
        self.assertExit(self.sb.accountd("plan", "--detailed-exitcode"), 0, "in sync on every server")
        self.check_tiers_everywhere(key, self.sb.user_creds("ORDERS", "u2"), 96 * MiB)
        # LOOKUP gets one reply per server: every resolver holds the new JWT.
        r = self.sb.probe("gather", self.sb.sys_creds, self.sb.url, "$SYS.REQ.ACCOUNT.%s.CLAIMS.LOOKUP" % key, "", 3000, 3)
        self.assertExit(r, 0, "LOOKUP answered by 3 servers")
        for jwt in r.stdout.split():
            self.assertGreater(jwt_claims(jwt)["iat"], iat0, "every resolver holds the new JWT")

    def test_3_tier_usage_warning_counts_each_stream_once(self):
        # test_1 left an R3 stream R3S with 3 messages: each server holds a replica of it.
        self.sb.write_accounts(self.TIERS.format(r3_store="96MiB"))
        self.apply_ok()
        creds = self.sb.user_creds("ORDERS", "tiers")

        def stream_bytes():
            r = self.sb.request(creds, "$JS.API.STREAM.INFO.R3S", timeout_ms=2000)
            return r.returncode == 0 and json.loads(r.stdout).get("state", {}).get("bytes")

        used = poll(stream_bytes, 10, "STREAM.INFO of R3S")
        self.sb.write_accounts(self.TIERS.format(r3_store=str(used - 1)))
        warning = "warning: R3.max_store %d is below current usage %d of the account's R3 streams\n" % (used - 1, used)
        # The account's usage the servers report (JSZ) follows the stream's own
        # a moment later on a busy machine: plan (which changes nothing) again
        # until it shows; counted three times it would never read `used`.
        plans = []

        def plan_warns():
            r = self.sb.accountd("plan")
            plans.append(r)
            return warning in r.stdout

        try:
            poll(plan_warns, 30, "plan's usage warning", interval=0.5)
        except harness.HarnessError as e:
            self.fail("%s: %s" % (e, self.out(plans[-1])))
        r = plans[-1]
        self.assertRegex(r.stdout, r"(?m)^~ ORDERS  R3\.max_store 96MiB -> %d$" % (used - 1), self.out(r))

    def test_4_connections_are_counted_on_every_server(self):
        text = self.TIERS.format(r3_store="96MiB") + "    limits:\n      max_connections: %d\n"
        self.sb.write_accounts(text % 10)
        self.apply_ok()
        key = self.keys()["ORDERS"]
        creds = self.sb.user_creds("ORDERS", "conns")
        held = [harness.Holder(self.sb, creds, url=srv.url) for srv in (self.sb.servers[0], self.sb.servers[0], self.sb.servers[1])]
        try:
            self.assertTrue(all(h.connected for h in held), [h.first for h in held])

            def counted():
                views = self.server_views(key)
                return sum((d or {}).get("client_connections", 0) for d in views.values()) == 3

            poll(counted, 10, "3 connections in the servers' INFO", interval=0.2)
            # Each server counts only its own; the warning adds them up.
            self.sb.write_accounts(text % 2)
            r = self.sb.accountd("plan")
            self.assertRegex(r.stdout, r"(?m)^~ ORDERS  max_connections 10 -> 2$", self.out(r))
            self.assertIn("warning: max_connections 2 is below the 3 connections the account has now; "
                          "the servers will close at least 1 of them", r.stdout)
            self.apply_ok()
            # Every server that has the account loaded applied the limit. (They shed the excess at
            # their next exchange of connection counts, up to 30 s later; how, differs by version.)
            views = self.server_views(key)
            for name in ("c1", "c2"):
                self.assertEqual(views[name]["decoded_jwt"]["nats"]["limits"]["conn"], 2, name)
        finally:
            for h in held:
                h.close()


if __name__ == "__main__":
    harness.main()
