"""Build nats-accountd's Debian package from a copy of the source tree (stdlib only).

dpkg-buildpackage writes into debian/, into obj-*/ and into the folder above
the tree, so the package tests never build in the tree they run from: they copy
it (the files git knows, with their uncommitted changes) into a folder of their
own, build there, and remove that folder at the end.
"""

import email.utils
import os
import re
import shutil
import subprocess
import tempfile

NAME = "nats-accountd"
TOOLS = ("dpkg-buildpackage", "dpkg-parsechangelog", "dpkg-architecture", "dh", "fakeroot", "lintian")


def source_root():
    """The source tree: $SRCDIR (set by meson), else the tree this file is in."""
    return os.path.abspath(os.environ.get("SRCDIR") or os.path.join(os.path.dirname(__file__), "..", ".."))


def missing_tools():
    return [t for t in TOOLS if not shutil.which(t)]


def _git_files(src):
    if not os.path.exists(os.path.join(src, ".git")) or not shutil.which("git"):
        return None
    r = subprocess.run(["git", "-C", src, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 0:
        return None  # e.g. a checkout owned by another user: copy the folder instead
    return [f for f in r.stdout.decode().split("\0") if f]


def _ignore_build_output(folder, names):
    top = os.path.abspath(folder) == os.path.abspath(source_root())
    out = {n for n in names if n in (".git", "__pycache__")}
    if top:
        out |= {n for n in names if n.startswith(("build", "obj-")) or n == "sandbox"}
    return out


def copy_tree(src, dst):
    """Copy the source tree src into dst (created): what git tracks or would add
    (working-tree contents), or without git every file but build folders."""
    files = _git_files(src)
    if files is None:
        shutil.copytree(src, dst, symlinks=True, ignore=_ignore_build_output)
        return dst
    os.makedirs(dst)
    for rel in files:
        s = os.path.join(src, rel)
        if not os.path.lexists(s) or (os.path.isdir(s) and not os.path.islink(s)):
            continue  # deleted but not committed yet, or a submodule
        d = os.path.join(dst, rel)
        os.makedirs(os.path.dirname(d), exist_ok=True)
        shutil.copy2(s, d, follow_symlinks=False)
    return dst


def changelog_field(tree, field):
    r = subprocess.run(["dpkg-parsechangelog", "-l", os.path.join(tree, "debian", "changelog"), "-S", field],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise RuntimeError("dpkg-parsechangelog: %s" % r.stderr.strip())
    return r.stdout.strip()


def upstream_version(version):
    """'1:0.1.0-2' -> '0.1.0' (no epoch, no Debian revision)."""
    v = version.split(":", 1)[-1]
    return v.rsplit("-", 1)[0] if "-" in v else v


def add_changelog_entry(tree, version, text):
    """Put a new top entry into tree/debian/changelog: same package, distribution
    and maintainer as the entry before it."""
    path = os.path.join(tree, "debian", "changelog")
    with open(path) as f:
        old = f.read()
    m = re.match(r"(\S+) \(([^)]+)\) ([^;]+);(.*)\n", old)
    trailer = re.search(r"(?m)^ -- (.+?)  ", old)
    if not m or not trailer:
        raise RuntimeError("%s: cannot read its first entry" % path)
    entry = "%s (%s) %s;%s\n\n  * %s\n\n -- %s  %s\n\n" % (
        m.group(1), version, m.group(3), m.group(4), text, trailer.group(1), email.utils.formatdate(localtime=True))
    with open(path, "w") as f:
        f.write(entry + old)


def host_arch():
    return subprocess.run(["dpkg-architecture", "-qDEB_HOST_ARCH"], stdout=subprocess.PIPE, text=True,
                          check=True).stdout.strip()


def make_orig_tarball(tree):
    """NAME_UPSTREAM.orig.tar.xz beside the tree, from the tree without debian/
    (what a release tarball of the repository holds)."""
    up = upstream_version(changelog_field(tree, "Version"))
    out = os.path.join(os.path.dirname(tree), "%s_%s.orig.tar.xz" % (NAME, up))
    subprocess.run(["tar", "-C", tree, "--exclude=./debian", "--sort=name", "--owner=0", "--group=0",
                    "--transform", "s,^\\.,%s-%s," % (NAME, up), "-cJf", out, "."], check=True)
    return out


class BuildError(Exception):
    pass


def build(tree, binary_only=True, nocheck=False, log_name=None):
    """dpkg-buildpackage -us -uc [-b] in tree. Returns the path of the .changes
    (the .deb and the other files are beside it). The full output goes to a log
    beside the tree; on failure its tail is in the exception."""
    version = changelog_field(tree, "Version").split(":", 1)[-1]
    parent = os.path.dirname(tree)
    log = os.path.join(parent, log_name or "build-%s.log" % version)
    env = dict(os.environ)
    for k in ("DEB_BUILD_OPTIONS", "DEB_BUILD_PROFILES", "MAKEFLAGS", "MESON_TESTTHREADS"):
        env.pop(k, None)
    if nocheck:
        env["DEB_BUILD_OPTIONS"] = "nocheck"
        env["DEB_BUILD_PROFILES"] = "nocheck"
    args = ["dpkg-buildpackage", "-us", "-uc"] + (["-b"] if binary_only else [])
    with open(log, "w") as f:
        r = subprocess.run(args, cwd=tree, env=env, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        with open(log) as f:
            tail = f.read()[-6000:]
        raise BuildError("%s exited %d in %s:\n%s" % (" ".join(args), r.returncode, tree, tail))
    changes = os.path.join(parent, "%s_%s_%s.changes" % (NAME, version, host_arch()))
    if not os.path.isfile(changes):
        raise BuildError("dpkg-buildpackage succeeded but %s is missing" % changes)
    return changes


def deb_of(changes):
    """The main package's .deb listed in a .changes file."""
    with open(changes) as f:
        names = re.findall(r"(?m)^ [0-9a-f]{32} \d+ \S+ \S+ (\S+\.deb)$", f.read())
    debs = [n for n in names if n.startswith(NAME + "_")]
    if len(debs) != 1:
        raise BuildError("%s lists %s, not one %s_*.deb" % (changes, names, NAME))
    return os.path.join(os.path.dirname(changes), debs[0])


def workdir():
    """A fresh folder outside the source tree for copies and build output."""
    return tempfile.mkdtemp(prefix="nats-accountd-deb.")
