#!/usr/bin/env python3
"""The Debian package: it builds the way an operator builds it, lintian finds
nothing to complain about, it holds what it should and nothing else, and its
version cannot drift from meson.build's (stdlib only).

A copy of the source tree (debbuild.py) gets an orig tarball and a full
`dpkg-buildpackage -us -uc` (source and binary, with the package's own test
run), and lintian checks the resulting .changes: the source package, the .deb,
the debug symbols package and the .buildinfo. Errors and warnings fail the test
unless debian/source/lintian-overrides or debian/nats-accountd.lintian-overrides
override them with a reason (a comment above the override).

Environment: SRCDIR (the source tree), PROJECT_VERSION (meson's), both set by
meson. KEEP_DEB=1 keeps the build folder.
"""

import glob
import os
import re
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import debbuild  # noqa: E402

SRC = debbuild.source_root()
WORK = None
CHANGES = None


def setUpModule():
    global WORK, CHANGES
    WORK = debbuild.workdir()
    up = debbuild.upstream_version(debbuild.changelog_field(SRC, "Version"))
    tree = debbuild.copy_tree(SRC, os.path.join(WORK, "%s-%s" % (debbuild.NAME, up)))
    debbuild.make_orig_tarball(tree)
    CHANGES = debbuild.build(tree, binary_only=False)


def tearDownModule():
    if WORK and not os.environ.get("KEEP_DEB"):
        shutil.rmtree(WORK, ignore_errors=True)
    elif WORK:
        sys.stderr.write("# kept %s\n" % WORK)


def run(args, **kw):
    return subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


class DebianPackageTest(unittest.TestCase):
    maxDiff = None

    def test_changelog_upstream_version_is_meson_version(self):
        meson = os.environ.get("PROJECT_VERSION")
        self.assertTrue(meson, "PROJECT_VERSION is not set")
        v = debbuild.changelog_field(SRC, "Version")
        self.assertEqual(debbuild.upstream_version(v), meson,
                         "debian/changelog's top entry (%s) is not meson.build's version %s: add a changelog entry"
                         % (v, meson))

    def test_drifted_changelog_stops_the_build(self):
        tree = debbuild.copy_tree(SRC, os.path.join(WORK, "drift"))
        meson = os.environ.get("PROJECT_VERSION", "0")
        debbuild.add_changelog_entry(tree, meson + ".1-1", "A version meson.build does not have.")
        with self.assertRaises(debbuild.BuildError) as cm:
            debbuild.build(tree, nocheck=True, log_name="build-drift.log")
        self.assertIn("meson.build has %s" % meson, str(cm.exception))
        self.assertEqual(glob.glob(os.path.join(WORK, "*%s.1-1*.deb" % meson)), [])

    def test_lintian_is_clean(self):
        with open(CHANGES) as f:
            listed = f.read()
        self.assertRegex(listed, r"(?m)\.dsc$", "the source package is not in %s" % CHANGES)
        self.assertRegex(listed, r"(?m)%s_\S+\.deb$" % debbuild.NAME)
        # Everything it reports, overridden tags and their reasons included, for the log.
        r = run(["lintian", "--display-info", "--show-overrides", "--fail-on", "none", CHANGES], timeout=300)
        sys.stderr.write(r.stdout)
        tags = [line for line in r.stdout.splitlines() if re.match(r"[A-Z]: ", line)]
        self.assertEqual([t for t in tags if t[0] in "EW"], [], "lintian errors or warnings")
        # Each override says why: lintian shows its comment as N: lines just above it.
        lines = r.stdout.splitlines()
        for i, line in enumerate(lines):
            if line.startswith("O: "):
                self.assertTrue(i > 0 and lines[i - 1].startswith("N: "), "override without a reason: %s" % line)
        # lintian's own verdict.
        r = run(["lintian", "--fail-on", "error,warning", CHANGES], timeout=300)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_deb_holds_what_it_should_and_nothing_else(self):
        deb = debbuild.deb_of(CHANGES)
        listing = run(["dpkg-deb", "-c", deb], timeout=60).stdout
        files = set()
        for line in listing.splitlines():
            fields = line.split()
            if fields and not fields[0].startswith("d"):
                files.add(re.sub(r"^\./", "", fields[5]))
        doc = "usr/share/doc/" + debbuild.NAME
        want = {
            "usr/bin/nats-accountd",
            "lib/systemd/system/nats-accountd.service",
            "usr/lib/systemd/catalog/nats-accountd.catalog",
            doc + "/copyright",
            doc + "/changelog.Debian.gz",
            doc + "/README.Debian",
        }
        for scd in glob.glob(os.path.join(SRC, "docs", "*.scd")):
            page = os.path.basename(scd)[:-len(".scd")]
            want.add("usr/share/man/man%s/%s.gz" % (page.rsplit(".", 1)[1], page))
        for folder, _, names in os.walk(os.path.join(SRC, "config")):
            for name in names:
                want.add(doc + "/examples/" + os.path.relpath(os.path.join(folder, name), os.path.join(SRC, "config")))
        # Config mode: the reloader for servers nats-accountd may not signal, the static user
        # that owns the fragments folder, and the unit's drop-in (an example).
        want |= {
            "lib/systemd/system/nats-accountd-reload.path",
            "lib/systemd/system/nats-accountd-reload.service",
            "usr/lib/sysusers.d/nats-accountd.conf",
            doc + "/examples/config-mode.conf",
        }
        if os.path.exists(os.path.join(SRC, "debian", debbuild.NAME + ".lintian-overrides")):
            want.add("usr/share/lintian/overrides/" + debbuild.NAME)
        self.assertEqual(files, want)

        unpacked = os.path.join(WORK, "unpacked")
        subprocess.run(["dpkg-deb", "-x", deb, unpacked], check=True)
        with open(os.path.join(unpacked, "lib/systemd/system/nats-accountd.service")) as f:
            unit = f.read()
        self.assertRegex(unit, r"(?m)^ExecStart=/usr/bin/nats-accountd ")
        self.assertRegex(unit, r"(?m)^ConditionPathExists=/etc/nats-accountd/nats-accountd.conf$")
        with open(os.path.join(unpacked, "usr/lib/systemd/catalog/nats-accountd.catalog"), "rb") as a, \
                open(os.path.join(SRC, "docs", "nats-accountd.catalog"), "rb") as b:
            self.assertEqual(a.read(), b.read())
        r = run([os.path.join(unpacked, "usr/bin/nats-accountd"), "--version"], timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(os.environ.get("PROJECT_VERSION", "?"), r.stdout)


def main():
    missing = debbuild.missing_tools()
    if missing:
        # tools/install-deps.sh installs them: their absence is a broken set-up, not a skip.
        print("missing %s: run tools/install-deps.sh" % ", ".join(missing), file=sys.stderr)
        return 1
    prog = unittest.main(module=__name__, exit=False, verbosity=2)
    return 0 if prog.result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
