"""The wire facts nats-accountd relies on, checked against the server under test
(NATS_SERVER), with the version each difference starts at (from the
nats-server sources; docs/COMPATIBILITY.md lists them):

  - CLAIMS.LOOKUP of a JWT the resolver does not hold: no reply before 2.9.17,
    an empty reply from 2.9.17 on (nats-server #4151);
  - a header on $SYS.REQ.CLAIMS.UPDATE: refused before 2.9.15, accepted after;
    on $SYS.REQ.ACCOUNT.<key>.CLAIMS.UPDATE (what the daemon sends) refused by
    every version;
  - $SYS.REQ.SERVER.<id>.RELOAD: no responder before 2.10.0;
  - VARZ config_digest: from 2.11.0;
  - an account JWT with a mapping the server would discard at install (the
    same destination twice; nats-io/jwt accepts it): stored before 2.15.1,
    refused on CLAIMS.UPDATE from 2.15.1 on;
  - unchanged everywhere: the shapes of the UPDATE, INFO, JSZ, ACCOUNTZ, VARZ
    and PACK replies and the error texts the daemon reads, and that a full
    resolver stores a JWT signed by a key the operator does not trust.

Run by meson (suite 'integration'); without a nats-server it skips (77).
"""

import json
import os
import re
import signal
import sys
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import jwt_claims, poll  # noqa: E402

MiB = 1024 * 1024
GHOST = "AAIOZ6UBDZSSFBQD3H6HBALO7QXUSKIOETLWNJYKJA3JA4GLK4KLHJEZ"  # an account key no one uses
KEY = r"[A-Z2-7]{55}"


def version_tuple(v):
    return tuple(int(x) for x in re.match(r"v?(\d+)\.(\d+)\.(\d+)", v).groups())


class WireTest(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.sb = None
        try:
            cls.sb = harness.Sandbox("wire")
            cls.sb.start_server()
            r = cls.sb.accountd("apply")
            if r.returncode != 0:
                raise harness.HarnessError("apply: %s%s" % (r.stdout, r.stderr))
            cls.keys = cls.sb.account_keys()
            # A user of APP and of LEGACY loads both accounts on the server.
            cls.sb.js_info(cls.sb.user_creds("APP"))
            cls.sb.request(cls.sb.user_creds("LEGACY"), "$JS.API.INFO", timeout_ms=1000)
            varz = cls.sb.gather_json("$SYS.REQ.SERVER.PING.VARZ", 1)[0]
        except harness.HarnessError as e:
            if cls.sb:
                cls.sb.cleanup()
            raise AssertionError(str(e))
        cls.varz = varz
        cls.version = version_tuple(varz["data"]["version"])
        cls.server_id = varz["server"]["id"]
        sys.stderr.write("\n  nats-server %s\n" % varz["data"]["version"])

    @classmethod
    def tearDownClass(cls):
        if cls.sb:
            cls.sb.cleanup()

    def one_reply(self, subject, payload=""):
        return self.sb.gather_json(subject, 1, payload)[0]

    def assertServerHeader(self, reply):
        self.assertRegex(reply["server"]["id"], "^N" + KEY + "$", reply)
        self.assertEqual(reply["server"]["name"], "nats-accountd-sandbox")

    # resolver ----------------------------------------------------------------

    def test_lookup_of_a_jwt_the_resolver_does_not_hold(self):
        r = self.sb.probe("gather", self.sb.sys_creds, self.sb.url, "$SYS.REQ.ACCOUNT.%s.CLAIMS.LOOKUP" % GHOST,
                          "", 1500, 1)
        if self.version >= (2, 9, 17):
            self.assertEqual((r.returncode, r.stdout), (0, "\n"), "an empty reply: " + r.stderr)
        else:
            self.assertEqual((r.returncode, r.stdout), (1, ""), "no reply at all: " + r.stderr)

    def test_lookup_and_pack_of_held_jwts(self):
        key = self.keys["APP"]
        jwt = self.sb.lookup_jwt(key)
        self.assertEqual(jwt_claims(jwt)["sub"], key)
        r = self.sb.probe("gather", self.sb.sys_creds, self.sb.url, "$SYS.REQ.CLAIMS.PACK", "", 3000, "until-empty")
        self.assertEqual(r.returncode, 0, "PACK ends with an empty message: " + r.stderr)
        lines = r.stdout.splitlines()
        self.assertEqual(len(lines), 4, "one message per JWT (3 accounts and SYS)")
        for line in lines:
            self.assertRegex(line, r"^A%s\|eyJ[^|]+$" % KEY)
        self.assertIn("%s|%s" % (key, jwt), lines)

    def test_update_replies(self):
        key = self.keys["APP"]
        ok = self.one_reply("$SYS.REQ.ACCOUNT.%s.CLAIMS.UPDATE" % key, self.sb.lookup_jwt(key))
        self.assertEqual(ok["data"], {"account": key, "code": 200, "message": "jwt updated"})
        self.assertNotIn("error", ok)
        self.assertServerHeader(ok)
        with self.sb.unrecorded():
            bad = self.one_reply("$SYS.REQ.ACCOUNT.%s.CLAIMS.UPDATE" % key, "not a jwt")
        self.assertEqual(bad["error"], {"account": "n/a", "code": 500,
                                        "description": "jwt update resulted in error - expected 3 chunks"})
        self.assertNotIn("data", bad)
        self.assertServerHeader(bad)

    def test_headers_on_claims_update(self):
        key = self.keys["APP"]
        jwt = self.sb.lookup_jwt(key)

        def with_header(subject):
            r = self.sb.probe("request-header", self.sb.sys_creds, self.sb.url, subject, jwt, "X-Test:1")
            self.assertEqual(r.returncode, 0, r.stderr)
            return json.loads(r.stdout)

        per_account = with_header("$SYS.REQ.ACCOUNT.%s.CLAIMS.UPDATE" % key)
        self.assertEqual(per_account.get("error", {}).get("description"),
                         "jwt update resulted in error - expected 3 chunks", per_account)
        general = with_header("$SYS.REQ.CLAIMS.UPDATE")
        if self.version >= (2, 9, 15):
            self.assertEqual(general.get("data", {}).get("code"), 200, general)
        else:
            self.assertIn("expected 3 chunks", general.get("error", {}).get("description", ""), general)

    def test_a_jwt_signed_by_an_untrusted_key_is_stored(self):
        key = self.keys["APP"]
        original = self.sb.lookup_jwt(key)
        rogue = self.sb.write("rogue.nk", self.sb.probe("gen-seed", "operator").stdout, 0o600)
        current = self.sb.write("app.jwt", original + "\n")
        with self.sb.unrecorded():
            r = self.sb.probe("resign-add-export", rogue, current, "rogue.events")
            self.assertEqual(r.returncode, 0, r.stderr)
            rep = self.one_reply("$SYS.REQ.ACCOUNT.%s.CLAIMS.UPDATE" % key, r.stdout.strip())
            self.assertEqual(rep.get("data", {}).get("message"), "jwt updated", rep)
            self.assertEqual(jwt_claims(self.sb.lookup_jwt(key))["iss"], jwt_claims(r.stdout)["iss"],
                             "the resolver holds the rogue JWT: the daemon must check issuers itself")
            # And an older iat replaces a newer one just as well.
            rep = self.one_reply("$SYS.REQ.ACCOUNT.%s.CLAIMS.UPDATE" % key, original)
            self.assertEqual(rep.get("data", {}).get("message"), "jwt updated", rep)
            self.assertEqual(self.sb.lookup_jwt(key), original)

    def test_mappings_the_server_would_discard(self):
        key = self.keys["APP"]
        original = self.sb.lookup_jwt(key)
        current = self.sb.write("app.jwt", original + "\n")
        dup = {"app.in": [{"subject": "app.out", "weight": 50}, {"subject": "app.out", "weight": 50}]}
        r = self.sb.probe("resign-set", self.sb.signer, current, "mappings", json.dumps(dup))
        self.assertEqual(r.returncode, 0, r.stderr)
        rep = self.one_reply("$SYS.REQ.ACCOUNT.%s.CLAIMS.UPDATE" % key, r.stdout.strip())
        if self.version >= (2, 15, 1):
            self.assertEqual(rep.get("error"), {"account": key, "code": 500, "description":
                             'jwt validation failed - mapping "app.in": duplicate entry for "app.out"'}, rep)
            self.assertEqual(self.sb.lookup_jwt(key), original)
        else:
            self.assertEqual(rep.get("data", {}).get("message"), "jwt updated", rep)
            self.assertEqual(self.one_reply("$SYS.REQ.ACCOUNT.%s.CLAIMS.UPDATE" % key, original)["data"]["code"], 200)

    # account state -----------------------------------------------------------

    def test_info_replies(self):
        info = self.one_reply("$SYS.REQ.ACCOUNT.%s.INFO" % self.keys["APP"])
        d = info["data"]
        self.assertIs(d["complete"], True)
        self.assertIs(d["jetstream_enabled"], True)
        self.assertEqual(d["decoded_jwt"]["sub"], self.keys["APP"])
        self.assertIsInstance(d["decoded_jwt"]["iat"], int)
        legacy = self.one_reply("$SYS.REQ.ACCOUNT.%s.INFO" % self.keys["LEGACY"])["data"]
        self.assertIs(legacy["jetstream_enabled"], False)
        ghost = self.one_reply("$SYS.REQ.ACCOUNT.%s.INFO" % GHOST)
        self.assertEqual(ghost["error"], {"code": 500, "description": "Account %s does not exist" % GHOST})
        self.assertIsNone(ghost.get("data"))
        self.assertServerHeader(ghost)

    def test_jsz_replies(self):
        d = self.one_reply("$SYS.REQ.ACCOUNT.%s.JSZ" % self.keys["APP"])["data"]
        self.assertEqual((d["memory"], d["storage"]), (0, 0))
        self.assertEqual((d["reserved_memory"], d["reserved_storage"]), (64 * MiB, 256 * MiB))
        legacy = self.one_reply("$SYS.REQ.ACCOUNT.%s.JSZ" % self.keys["LEGACY"])
        self.assertEqual(legacy["error"], {"code": 500,
                                           "description": 'account "%s" not jetstream enabled' % self.keys["LEGACY"]})
        ghost = self.one_reply("$SYS.REQ.ACCOUNT.%s.JSZ" % GHOST)
        self.assertEqual(ghost["error"], {"code": 500, "description": 'account "%s" not found' % GHOST})

    def test_accountz_lists_loaded_accounts(self):
        rep = self.one_reply("$SYS.REQ.SERVER.PING.ACCOUNTZ")
        self.assertEqual(rep["data"]["server_id"], self.server_id)
        self.assertIn(self.keys["APP"], rep["data"]["accounts"])
        self.assertNotIn(self.keys["ORDERS"], rep["data"]["accounts"], "ORDERS was never used here")

    # servers -----------------------------------------------------------------

    def test_varz_fields(self):
        d = self.varz["data"]
        self.assertEqual(d["server_id"], self.server_id)
        self.assertEqual(d["server_name"], "nats-accountd-sandbox")
        op = jwt_claims(self.sb.read("operator.jwt"))
        self.assertEqual(d["system_account"], op["nats"]["system_account"])
        self.assertEqual([c["sub"] for c in d["trusted_operators_claim"]], [op["sub"]])
        self.assertEqual(d["trusted_operators_claim"][0]["nats"]["signing_keys"], op["nats"]["signing_keys"])
        self.assertIsInstance(d["jetstream"]["config"], dict)
        self.assertEqual((d["cluster"], d["gateway"], d["leaf"]), ({}, {}, {}), "a standalone server")
        self.assertRegex(d["config_load_time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
        if self.version >= (2, 11, 0):
            self.assertRegex(d["config_digest"], r"^sha256:[0-9a-f]{64}$")
        else:
            self.assertNotIn("config_digest", d)

    def reload_and_read_varz(self, how):
        before = self.one_reply("$SYS.REQ.SERVER.PING.VARZ")["data"]
        if how == "signal":
            os.kill(self.sb.servers[0].proc.pid, signal.SIGHUP)
            reply = None
        else:
            r = self.sb.request(self.sb.sys_creds, "$SYS.REQ.SERVER.%s.RELOAD" % self.server_id, "", 2000)
            if r.returncode == 1:
                return before, None, r
            self.assertEqual(r.returncode, 0, r.stderr)
            reply = json.loads(r.stdout)
        after = poll(lambda: (lambda v: v if v["config_load_time"] != before["config_load_time"] else None)(
            self.one_reply("$SYS.REQ.SERVER.PING.VARZ")["data"]), 10, "config_load_time to move", interval=0.1)
        return before, after, reply

    def test_reload(self):
        conf = self.sb.read("nats-server.conf")
        try:
            for how, payload in (("signal", 2 * MiB), ("request", 3 * MiB)):
                self.sb.write("nats-server.conf", conf + "\nmax_payload: %d\n" % payload)
                before, after, reply = self.reload_and_read_varz(how)
                if how == "request" and self.version < (2, 10, 0):
                    self.assertIn("No responders", reply.stderr, "no RELOAD before 2.10")
                    continue
                if reply is not None:
                    self.assertEqual(set(reply), {"server"}, "a reload that worked: no data, no error")
                self.assertEqual(after["max_payload"], payload)
                if self.version >= (2, 11, 0):
                    self.assertNotEqual(after["config_digest"], before["config_digest"])
            if self.version >= (2, 10, 0):
                self.sb.write("nats-server.conf", conf + "\nthis is { not a config\n")
                r = self.sb.request(self.sb.sys_creds, "$SYS.REQ.SERVER.%s.RELOAD" % self.server_id, "", 2000)
                self.assertEqual(r.returncode, 0, r.stderr)
                err = json.loads(r.stdout).get("error", {})
                self.assertEqual(err.get("code"), 500, r.stdout)
                self.assertRegex(err.get("description", ""), r"^Parse error on line \d+", r.stdout)
        finally:
            self.sb.write("nats-server.conf", conf)
            os.kill(self.sb.servers[0].proc.pid, signal.SIGHUP)
            time.sleep(0.2)


if __name__ == "__main__":
    harness.main()
