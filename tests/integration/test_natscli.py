"""The nats CLI (natscli, pinned in tools/go-pins.txt) as an independent reader:
`nats account info` as a user of each managed account shows exactly the
JetStream limits of the accounts file, after apply and after an edit.

Run by meson (suite 'integration') with NATS_ACCOUNTD and NATS_PROBE set;
NATS_SERVER picks the server (default: nats-server on PATH), NATS_CLI a prebuilt
nats (default: built by tools/go-tools.sh). Without a server or without Go the
program skips (exit 77). The CLI runs with HOME and XDG_* in the sandbox and
every connection setting as a flag: nothing is read from or written to ~.
"""

import os
import re
import subprocess
import sys
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

MiB = 1024 * 1024
GiB = 1024 * MiB
UNITS = {"B": 1, "KiB": 1024, "MiB": MiB, "GiB": GiB, "TiB": 1024 * GiB, "PiB": 1024 ** 5, "EiB": 1024 ** 6}

# What the accounts file says. Sizes are chosen so that the CLI's rounding
# (humanize.IBytes: one decimal below 10 units) shows them exactly.
APP = {"max_memory": 64 * MiB, "max_store": GiB, "max_streams": 7, "max_consumers": 70,
       "max_ack_pending": 1000, "memory_max_stream_bytes": 8 * MiB, "store_max_stream_bytes": 512 * MiB,
       "max_bytes_required": True}
APP_EDITED = dict(APP, max_store=2 * GiB, max_streams=9, max_bytes_required=False)
ORDERS = {"R1": {"max_memory": 32 * MiB, "max_store": 128 * MiB, "max_streams": 5},
          "R3": {"max_memory": 16 * MiB, "max_store": 64 * MiB, "max_streams": 3, "max_consumers": 9}}
JS_KEYS = ("max_memory", "max_store", "max_streams", "max_consumers", "max_ack_pending",
           "memory_max_stream_bytes", "store_max_stream_bytes", "max_bytes_required")


def yaml_limits(limits, indent):
    return "".join("%s%s: %s\n" % (" " * indent, k, str(v).lower() if isinstance(v, bool) else v)
                   for k, v in limits.items())


def accounts_file(app):
    text = "accounts:\n  APP:\n    jetstream:\n" + yaml_limits(app, 6)
    text += "  ORDERS:\n    jetstream:\n      tiers:\n"
    for tier, limits in ORDERS.items():
        text += "        %s:\n" % tier + yaml_limits(limits, 10)
    return text + "  LEGACY:\n    jetstream: disabled\n"


def expected(limits):
    """The file's limits with an omitted one as the server's unlimited (-1, false)."""
    return {k: limits.get(k, False if k == "max_bytes_required" else -1) for k in JS_KEYS}


def size(text):
    if text == "Unlimited":
        return -1
    m = re.fullmatch(r"([0-9.]+) (\w+)", text)
    if not m or m.group(2) not in UNITS:
        raise ValueError("not a size: %r" % text)
    return round(float(m.group(1)) * UNITS[m.group(2)])


def count(text):
    """A count as the CLI prints it ("1,000"), or Unlimited."""
    return -1 if text == "Unlimited" else int(text.replace(",", ""))


def parse_account_info(out):
    """{tier: {accounts-file key: value}} from the text of `nats account info`."""
    tiers, cur = {}, None
    for line in out.splitlines():
        m = re.match(r"^\s*Tier: (\S+):\s*$", line)
        if m:
            cur = tiers.setdefault(m.group(1), {})
            continue
        m = re.match(r"^\s*([A-Z][A-Za-z ]+): (.*?)\s*$", line)
        if not m or cur is None:
            continue
        label, value = m.groups()
        usage = re.fullmatch(r"\S+ \S+ of (Unlimited|\S+ \S+)(?: \(.* reserved\))?", value)
        if label == "Memory" and usage:
            cur["max_memory"] = size(usage.group(1))
        elif label == "Storage" and usage:
            cur["max_store"] = size(usage.group(1))
        elif label == "Memory Per Stream":
            cur["memory_max_stream_bytes"] = size(value)
        elif label == "Storage Per Stream":
            cur["store_max_stream_bytes"] = size(value)
        elif label == "Streams":
            cur["max_streams"] = count(re.fullmatch(r"[\d,]+ of (Unlimited|[\d,]+)", value).group(1))
        elif label == "Consumers":
            cur["max_consumers"] = count(re.sub(r"^Maximum ([\d,]+) per stream$", r"\1", value))
        elif label == "Consumer Maximum Ack Pending":
            cur["max_ack_pending"] = count(value)
        elif label == "Stream Requires Max Bytes Set":
            cur["max_bytes_required"] = {"true": True, "false": False}[value]
    return tiers


class NatsCliTest(unittest.TestCase):
    def setUp(self):
        self.nats = harness.go_program("path", "nats")
        try:
            self.sb = harness.Sandbox("natscli")
        except harness.HarnessError as e:
            self.fail(str(e))
        try:
            self.sb.start_server()
        except harness.HarnessError as e:
            self.sb.cleanup()
            self.fail(str(e))
        self.home = os.path.join(self.sb.root, "home")
        os.mkdir(self.home, 0o700)

    def tearDown(self):
        self.sb.cleanup()

    def account_info(self, account):
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": self.home,
               "XDG_CONFIG_HOME": os.path.join(self.home, "config"), "XDG_DATA_HOME": os.path.join(self.home, "data"),
               "XDG_CACHE_HOME": os.path.join(self.home, "cache")}
        creds = self.sb.user_creds(account, "cli")
        r = subprocess.run([self.nats, "--server", self.sb.url, "--creds", creds, "--timeout", "5s",
                                    "account", "info"], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, env=env, timeout=60)
        self.assertEqual(r.returncode, 0, "nats account info as %s: %s%s" % (account, r.stdout, r.stderr))
        return r.stdout

    def assertShows(self, account, want):
        out = self.account_info(account)
        self.assertEqual(parse_account_info(out), {t: expected(l) for t, l in want.items()},
                         "nats account info as a user of %s:\n%s" % (account, out))

    def test_account_info_shows_the_files_limits(self):
        self.sb.write_accounts(accounts_file(APP))
        r = self.sb.accountd("apply")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertShows("APP", {"Default": APP})
        self.assertShows("ORDERS", ORDERS)
        out = self.account_info("LEGACY")
        self.assertEqual(parse_account_info(out), {}, out)
        self.assertRegex(out, r"JetStream (is )?not (enabled|supported)", out)

        self.sb.write_accounts(accounts_file(APP_EDITED))
        r = self.sb.accountd("apply")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r"(?m)^~ APP\b")
        self.assertShows("APP", {"Default": APP_EDITED})
        self.assertShows("ORDERS", ORDERS)


if __name__ == "__main__":
    harness.main(needs=("nats",))
