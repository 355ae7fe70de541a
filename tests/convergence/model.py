"""What the convergence driver writes and what it expects (stdlib only, no I/O).

- Declarations of accounts as plain dicts, rendered as YAML in the accounts
  file's many spellings (block and flow mappings, sizes with every unit,
  `unlimited`, `enabled`/`true`, comments, anchors and merge keys).
- Invalid files: a valid file with one error that SPEC.md says must be refused.
- What a server must then hold, normalised the way nats-server reads an
  account JWT (NATS-FACTS.md: absent = 0, streams/consumers 0 = unlimited, ...):
  the claims (`expected_claims`, compared with `claims_state` of a JWT) and what
  a user of the account sees in `$JS.API.INFO` (`js_info_state`).
- Schedules: a seeded random list of steps (edits, faults, checks).

Nothing here looks at the daemon: the expectations come from the accounts
file's documented meaning (nats-accountd.accounts(5)), not from plan.
"""

import random

KiB = 1024
MiB = 1024 * KiB

# Accounts the files draw from. The first three are what `init` writes.
POOL = ("APP", "ORDERS", "LEGACY", "BILLING", "METRICS", "AUDIT")

JS_FIELDS = ("max_memory", "max_store", "max_streams", "max_consumers", "max_ack_pending",
             "memory_max_stream_bytes", "store_max_stream_bytes", "max_bytes_required")
SIZE_FIELDS = {"max_memory", "max_store", "memory_max_stream_bytes", "store_max_stream_bytes",
               "max_payload", "max_data"}
LIMIT_FIELDS = ("max_connections", "max_subscriptions", "max_payload", "max_leafnodes", "max_data",
                "max_imports", "max_exports")

# accounts file field -> account JWT claim (nats.limits / a tier of nats.limits.tiered_limits)
JS_CLAIM = {"max_memory": "mem_storage", "max_store": "disk_storage", "max_streams": "streams",
            "max_consumers": "consumer", "max_ack_pending": "max_ack_pending",
            "memory_max_stream_bytes": "mem_max_stream_bytes", "store_max_stream_bytes": "disk_max_stream_bytes",
            "max_bytes_required": "max_bytes_required"}
LIMIT_CLAIM = {"max_connections": "conn", "max_subscriptions": "subs", "max_payload": "payload",
               "max_leafnodes": "leaf", "max_data": "data", "max_imports": "imports", "max_exports": "exports"}
# accounts file field -> $JS.API.INFO limits field
JS_INFO = {"max_memory": "max_memory", "max_store": "max_storage", "max_streams": "max_streams",
           "max_consumers": "max_consumers", "max_ack_pending": "max_ack_pending",
           "memory_max_stream_bytes": "memory_max_stream_bytes", "store_max_stream_bytes": "storage_max_stream_bytes",
           "max_bytes_required": "max_bytes_required"}

# (text, bytes) of the size units of nats-accountd.accounts(5): K/M powers of 1000, KB/MB and KiB/MiB of 1024.
UNITS = (("", 1), ("B", 1), ("K", 1000), ("KB", KiB), ("KiB", KiB), ("Ki", KiB), ("kib", KiB),
         ("M", 1000 * 1000), ("MB", MiB), ("MiB", MiB), ("Mi", MiB))


# ---- declarations --------------------------------------------------------------

def _size(rng, lo, hi):
    """A size in [lo, hi] bytes, made of a count and a unit so that it can be written exactly."""
    text, mult = rng.choice(UNITS)
    n = rng.randint(max(1, lo // mult), max(1, hi // mult))
    return n * mult


def _js_limits(rng, tier=False):
    """A random mapping of JetStream limits. Sizes stay small so that every
    account of POOL together fits the servers' JetStream totals (init: 1G/10G)."""
    out = {}
    for f in JS_FIELDS:
        if rng.random() < 0.45:
            continue
        if f == "max_bytes_required":
            out[f] = rng.random() < 0.5
        elif rng.random() < 0.15:
            out[f] = -1
        elif f == "max_memory":
            out[f] = 0 if rng.random() < 0.05 else _size(rng, 64 * KiB, 48 * MiB)
        elif f == "max_store":
            out[f] = _size(rng, 64 * KiB, 400 * MiB)
        elif f in SIZE_FIELDS:
            out[f] = _size(rng, 1 * KiB, 32 * MiB)
        else:
            out[f] = rng.randint(1, 5000)
    if out.get("max_memory") == 0 and out.get("max_store", -1) == 0:
        out["max_store"] = MiB
    if out.get("max_memory") == 0 and "max_store" not in out:
        out["max_store"] = 4 * MiB
    return out


CONFIG_LIMIT_FIELDS = ("max_connections", "max_subscriptions", "max_payload", "max_leafnodes")


def _account_limits(rng, mode="operator"):
    out = {}
    for f in LIMIT_FIELDS if mode == "operator" else CONFIG_LIMIT_FIELDS:
        if rng.random() < 0.4:
            continue
        if rng.random() < 0.2:
            out[f] = -1
        elif f == "max_connections":
            out[f] = rng.randint(8, 1000)  # the checks connect as a user of the account
        elif f == "max_subscriptions":
            out[f] = rng.randint(20, 100000)
        elif f == "max_payload":
            out[f] = _size(rng, 4 * KiB, 1 * MiB)
        elif f == "max_leafnodes":
            out[f] = rng.randint(0, 10)
        elif f == "max_data":
            out[f] = _size(rng, 1 * MiB, 400 * MiB)
        elif f == "max_imports":
            out[f] = rng.randint(10, 100)
        else:  # max_exports: above what the foreign tool adds (FOREIGN_EXPORTS_MAX)
            out[f] = rng.randint(FOREIGN_EXPORTS_MAX + 5, 100)
    return out


FOREIGN_EXPORTS_MAX = 6


def random_decl(rng, topology, mode="operator"):
    """One account's declaration: {"js": ..., "limits": ...}.

    js: None (omitted: left as the servers have it), "enabled", "disabled",
    {"flat": {...}} or {"tiers": {"R1": {...}, ...}}; limits: None or {...}."""
    r = rng.random()
    if r < 0.06:
        js = None
    elif r < 0.16:
        js = "enabled"
    elif r < 0.30:
        js = "disabled"
    elif r < 0.45 and mode == "operator":
        tiers = ["R1", "R3"] if topology == "cluster" else ["R1"]
        chosen = [t for t in tiers if rng.random() < 0.7] or ["R1"]
        js = {"tiers": {t: _js_limits(rng, tier=True) for t in chosen}}
        if len(chosen) > 1 and rng.random() < 0.3:
            # The same limits on every tier: written with an anchor and merge keys.
            js["tiers"] = {t: dict(js["tiers"][chosen[0]]) for t in chosen}
    else:
        js = {"flat": _js_limits(rng)}
    limits = None if rng.random() < 0.3 else _account_limits(rng, mode)
    return {"js": js, "limits": limits}


def mutate(rng, model, topology, mode="operator", names=POOL):
    """A new valid model from `model`: 1..N accounts changed, sometimes one added or removed."""
    new = {n: d for n, d in model.items()}
    k = rng.randint(1, max(1, len(new)))
    for n in rng.sample(sorted(new), min(k, len(new))):
        new[n] = random_decl(rng, topology, mode)
    r = rng.random()
    missing = [n for n in names if n not in new]
    if r < 0.15 and missing:
        n = rng.choice(missing)
        new[n] = random_decl(rng, topology, mode)
    elif r < 0.25 and len(new) > 1:
        del new[rng.choice(sorted(new))]
    return new


# ---- rendering -------------------------------------------------------------------

def _size_text(rng, v):
    if v == -1:
        return rng.choice(["-1", "unlimited"])
    if v == 0:
        return "0"
    fits = [(t, m) for t, m in UNITS if m > 1 and v % m == 0]
    if not fits or rng.random() < 0.2:
        return str(v) if rng.random() < 0.8 else "%dB" % v
    t, m = rng.choice(fits)
    return "%d%s%s" % (v // m, " " if rng.random() < 0.15 else "", t)


def _value_text(rng, field, v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if field in SIZE_FIELDS:
        return _size_text(rng, v)
    if v == -1:
        return rng.choice(["-1", "unlimited"])
    return str(v)


def _mapping_lines(rng, mapping, indent, flow_ok=True):
    """YAML for a mapping of limits under a key already written: a list of lines
    (block) or a one-line flow text (returned as a str)."""
    items = list(mapping.items())
    rng.shuffle(items)
    if not items:
        return "{}"
    if flow_ok and rng.random() < 0.35:
        return "{ " + ", ".join("%s: %s" % (f, _value_text(rng, f, v)) for f, v in items) + " }"
    return ["%s%s: %s" % (" " * indent, f, _value_text(rng, f, v)) for f, v in items]


def _put(lines, key_line, value):
    if isinstance(value, str):
        lines.append("%s %s" % (key_line, value))
    else:
        lines.append(key_line)
        lines.extend(value)


def render(model, rng, inject=None):
    """The accounts file of a model; inject(lines, positions) may spoil it
    (positions: name -> index of the account's first line)."""
    lines = []
    if rng.random() < 0.3:
        lines.append("# accounts kept by nats-accountd (convergence driver)")
    lines.append("accounts:")
    positions = {}
    names = list(model)
    rng.shuffle(names)
    for name in names:
        d = model[name]
        positions[name] = len(lines)
        if d["js"] is None and d["limits"] is None:
            lines.append("  %s: %s" % (name, rng.choice(["{}", "~", ""])))
            continue
        lines.append("  %s:" % name)
        js = d["js"]
        if js is not None:
            if js == "enabled":
                lines.append("    jetstream: %s" % rng.choice(["enabled", "true"]))
            elif js == "disabled":
                lines.append("    jetstream: %s" % rng.choice(["disabled", "false"]))
            elif "flat" in js:
                _put(lines, "    jetstream:", _mapping_lines(rng, js["flat"], 6))
            else:
                lines.append("    jetstream:")
                lines.append("      tiers:")
                tiers = list(js["tiers"].items())
                anchor = None
                for t, lim in tiers:
                    if anchor is None and lim and rng.random() < 0.2:
                        # An anchor on one tier, merged into the next with the same values.
                        anchor = (t, lim)
                        _put(lines, "        %s: &%s_%s" % (t, name.lower(), t), _mapping_lines(rng, lim, 10, flow_ok=False))
                    elif anchor is not None and anchor[1] == lim:
                        lines.append("        %s: { <<: *%s_%s }" % (t, name.lower(), anchor[0]))
                    else:
                        _put(lines, "        %s:" % t, _mapping_lines(rng, lim, 10))
        if d["limits"] is not None:
            _put(lines, "    limits:", _mapping_lines(rng, d["limits"], 6))
        if rng.random() < 0.1:
            lines.append("    # %s: edited by the convergence driver" % name)
    if inject:
        inject(lines, positions, rng)
    return "\n".join(lines) + "\n"


# ---- invalid files -----------------------------------------------------------------

def _insert_in(lines, positions, rng, text):
    name = rng.choice(sorted(positions))
    at = positions[name]
    head = lines[at]
    if head.rstrip().endswith(":"):
        lines.insert(at + 1, text)
    else:  # `NAME: {}` and the like: give it a block
        lines[at] = "  %s:" % name
        lines.insert(at + 1, text)


def _spoilers():
    """Each spoils a rendered valid file so that SPEC.md says it must be refused."""
    def unknown_key(lines, pos, rng):
        _insert_in(lines, pos, rng, "    %s: 1" % rng.choice(["jetstrem", "limit", "max_stroe", "key_id"]))

    def negative_size(lines, pos, rng):
        _insert_in(lines, pos, rng, "    jetstream: { max_store: -%d }" % rng.randint(2, 99))

    def wrong_type(lines, pos, rng):
        _insert_in(lines, pos, rng, "    jetstream: { max_streams: %s }" % rng.choice(["ten", "1.5", "[1]"]))

    def zero_count(lines, pos, rng):
        _insert_in(lines, pos, rng, "    jetstream: { max_consumers: 0 }")

    def both_zero(lines, pos, rng):
        _insert_in(lines, pos, rng, "    jetstream: { max_memory: 0, max_store: 0 }")

    def overflow(lines, pos, rng):
        _insert_in(lines, pos, rng, "    jetstream: { max_store: 99999999999999999999 }")

    def conn_overflow(lines, pos, rng):
        _insert_in(lines, pos, rng, "    limits: { max_connections: 4294967296 }")

    def bad_tier(lines, pos, rng):
        _insert_in(lines, pos, rng, "    jetstream: { tiers: { R9: {} } }")

    def bad_key(lines, pos, rng):
        _insert_in(lines, pos, rng, "    key: ABC%d" % rng.randint(0, 999))

    def bad_name(lines, pos, rng):
        lines.append("  %s: {}" % rng.choice(["BAD.NAME", "ORDERS.*", "has space", "X>"]))

    def duplicate_account(lines, pos, rng):
        lines.append("  %s: {}" % rng.choice(sorted(pos)))

    def duplicate_key(lines, pos, rng):
        _insert_in(lines, pos, rng, "    limits: {}\n    limits: {}")

    def syntax(lines, pos, rng):
        _insert_in(lines, pos, rng, "    jetstream: { max_memory: 1MiB")

    def top_level(lines, pos, rng):
        lines[lines.index("accounts:")] = "acounts:"

    def tab_indent(lines, pos, rng):
        _insert_in(lines, pos, rng, "\tlimits: {}")

    def tiers_in_config_mode(lines, pos, rng):
        _insert_in(lines, pos, rng, "    jetstream: { tiers: { R1: {} } }")

    def operator_only_limit(lines, pos, rng):
        _insert_in(lines, pos, rng, "    limits: { %s: 5 }" % rng.choice(["max_imports", "max_exports", "max_data"]))

    common = [unknown_key, negative_size, wrong_type, zero_count, both_zero, overflow, conn_overflow, bad_tier,
              bad_key, bad_name, duplicate_account, duplicate_key, syntax, top_level, tab_indent]
    return {"operator": common, "config": common + [tiers_in_config_mode, operator_only_limit]}


SPOILERS = _spoilers()


def render_invalid(model, rng, mode="operator"):
    """(text, what): a file with one error."""
    spoil = rng.choice(SPOILERS[mode])
    return render(model, rng, inject=spoil), spoil.__name__


# ---- expectations ---------------------------------------------------------------------

def _norm_js_claims(lim):
    """A JWT's JetStream limits (one tier, or the flat ones) as nats-server reads them."""
    def num(k):
        v = lim.get(k)
        return v if isinstance(v, int) and not isinstance(v, bool) else 0
    out = {"max_memory": num("mem_storage"), "max_store": num("disk_storage")}
    for f in ("max_streams", "max_consumers"):
        v = num(JS_CLAIM[f])
        out[f] = -1 if v <= 0 else v
    for f in ("max_ack_pending", "memory_max_stream_bytes", "store_max_stream_bytes"):
        v = num(JS_CLAIM[f])
        out[f] = -1 if v <= 0 else v
    out["max_bytes_required"] = bool(lim.get("max_bytes_required", False))
    return out


def _full_js(limits):
    """Declared JetStream limits with the omitted ones unlimited."""
    out = {f: -1 for f in JS_FIELDS}
    out["max_bytes_required"] = False
    out.update(limits)
    # Counts of 0 are refused by the file; nothing else to normalise.
    return out


def claims_state(nats):
    """What an account JWT's `nats` object says: {"js": ..., "limits": {...}}."""
    lim = nats.get("limits") or {}
    tiered = lim.get("tiered_limits") or {}
    if tiered:
        js = {"tiers": {t: _norm_js_claims(v or {}) for t, v in tiered.items()}}
    elif (lim.get("mem_storage") or 0) != 0 or (lim.get("disk_storage") or 0) != 0:
        js = {"flat": _norm_js_claims(lim)}
    else:
        js = "disabled"
    acct = {}
    for f, c in LIMIT_CLAIM.items():
        v = lim.get(c)
        acct[f] = v if isinstance(v, int) and not isinstance(v, bool) else 0
    return {"js": js, "limits": acct}


def expected_claims(decl, mode="operator"):
    """The claims state a declaration asks for; None where it leaves things as they are."""
    js = decl["js"]
    if js is None:
        ejs = None
    elif js == "enabled":
        ejs = {"flat": _full_js({})}
    elif js == "disabled":
        ejs = "disabled"
    elif "flat" in js:
        ejs = {"flat": _full_js(js["flat"])}
    else:
        ejs = {"tiers": {t: _full_js(v) for t, v in js["tiers"].items()}}
    lim = None
    if decl["limits"] is not None:
        lim = {f: -1 for f in (LIMIT_FIELDS if mode == "operator" else CONFIG_LIMIT_FIELDS)}
        lim.update(decl["limits"])
    return {"js": ejs, "limits": lim}


def claims_differences(want, got):
    """Readable differences between expected_claims() and claims_state() ([] when equal)."""
    out = []
    if want["js"] is not None and want["js"] != got["js"]:
        out.append("jetstream: want %s, JWT has %s" % (_js_text(want["js"]), _js_text(got["js"])))
    if want["limits"] is not None:
        for f, v in want["limits"].items():
            if got["limits"].get(f) != v:
                out.append("%s: want %s, JWT has %s" % (f, v, got["limits"].get(f)))
    return out


def _js_text(js):
    if isinstance(js, str) or js is None:
        return str(js)
    if "flat" in js:
        return "{%s}" % ", ".join("%s: %s" % kv for kv in sorted(js["flat"].items()))
    return "tiers {%s}" % "; ".join("%s: %s" % (t, _js_text({"flat": v})) for t, v in sorted(js["tiers"].items()))


def js_info_state(reply):
    """What `$JS.API.INFO` shows a user of the account, in the shape of expected_claims()["js"]."""
    err = reply.get("error")
    if err:
        # 503 is both "jetstream not enabled for account" (10039) and "JetStream
        # system temporarily unavailable" (10008: a cluster without a meta leader,
        # for a moment after nodes come back): only the first says disabled.
        if err.get("code") == 503 and err.get("err_code") in (10039, None):
            return "disabled"
        return "unavailable: %s" % err
    tiers = reply.get("tiers") or {}

    def norm(l):
        out = {}
        for f, k in JS_INFO.items():
            v = l.get(k)
            if f == "max_bytes_required":
                out[f] = bool(v)
            elif not isinstance(v, int):
                out[f] = None
            elif f in ("max_memory", "max_store"):
                out[f] = v
            else:
                out[f] = -1 if v <= 0 else v
        return out

    return {"flat": norm(reply.get("limits") or {}), "tiers": {t: norm((v or {}).get("limits") or {})
                                                              for t, v in tiers.items()}}


def js_info_differences(want_js, info):
    """[] when $JS.API.INFO shows what want_js (expected_claims()["js"]) asks for."""
    if want_js is None:
        return []
    if want_js == "disabled" or info == "disabled" or isinstance(info, str):
        return [] if want_js == info else ["$JS.API.INFO: want %s, got %s" % (_js_text(want_js), _js_text(info)
                                                                             if not isinstance(info, str) else info)]
    if "flat" in want_js:
        got = info["flat"]
        return ["$JS.API.INFO %s: want %s, got %s" % (f, v, got.get(f)) for f, v in want_js["flat"].items()
                if got.get(f) != v]
    out = []
    for t, lim in want_js["tiers"].items():
        got = info["tiers"].get(t)
        if got is None:
            out.append("$JS.API.INFO: no tier %s (tiers %s)" % (t, sorted(info["tiers"])))
            continue
        out += ["$JS.API.INFO %s.%s: want %s, got %s" % (t, f, v, got.get(f)) for f, v in lim.items()
                if got.get(f) != v]
    return out


# ---- schedules ---------------------------------------------------------------------------

EDIT_METHODS = ("rename", "inplace", "truncate", "symlink", "configmap")


def generate(seed, n_steps, topology="standalone", runner="plain", mode="operator", watchdog_sec=5,
             request_timeout=2.0, features=()):
    # features: edit methods to leave out (e.g. "symlink", "configmap").
    """A random schedule: {"seed", "topology", "runner", "mode", "initial", "steps"}.

    Every step carries all it needs (the whole file text of an edit, how long a
    fault lasts at least), so that any subset of the steps is a schedule too
    (what shrinking relies on). Faults come as begin/end pairs; a check ends
    every fault still open before it waits for the servers to settle."""
    rng = random.Random(seed)
    nodes = 3 if topology == "cluster" else 1
    initial = {n: random_decl(rng, topology, mode) for n in POOL}
    model = initial
    steps = []
    node_state = ["up"] * nodes
    daemon_stopped = False
    deleted = False
    next_check = rng.randint(4, 10)
    methods = [m for m in EDIT_METHODS if m not in features]
    foreign_n = 0
    exports = {}  # per account: the max_exports drawn stay above what is added

    def edit(valid=True, method=None):
        nonlocal model
        m = method or rng.choice(methods)
        if valid:
            model = mutate(rng, model, topology, mode)
            return {"op": "edit", "method": m, "text": render(model, rng), "valid": True, "model": model}
        text, what = render_invalid(model, rng, mode)
        return {"op": "edit", "method": m, "text": text, "valid": False, "error": what}

    weights = {
        "edit": 26, "burst": 4, "invalid": 8, "delete": 2, "restore": 0, "sighup": 5, "restart": 2,
        "daemon_kill": 4, "daemon_stop": 2 if runner == "plain" else 0, "daemon_cont": 0, "server_kill": 4,
        "server_stop": 4, "node_down": 3 if nodes > 1 else 0, "server_start": 0, "server_cont": 0,
        "foreign_export": 4 if mode == "operator" else 0, "foreign_drift": 2,
        "pause": 10, "reload": 3 if runner == "systemd" else 0,
    }
    while len(steps) < n_steps:
        w = dict(weights)
        w["restore"] = 12 if deleted else 0
        w["delete"] = 0 if deleted else w["delete"]
        w["daemon_cont"] = 15 if daemon_stopped else 0
        w["daemon_stop"] = 0 if daemon_stopped else w["daemon_stop"]
        w["server_start"] = 8 * node_state.count("down")
        w["server_cont"] = 8 * node_state.count("stopped")
        if "up" not in node_state:
            w["server_kill"] = w["server_stop"] = w["node_down"] = 0
        op = rng.choices(list(w), weights=list(w.values()))[0]
        if op == "edit":
            steps.append(edit())
        elif op == "burst":
            for _ in range(rng.randint(3, 8)):
                steps.append(edit(valid=rng.random() < 0.85))
                steps.append({"op": "pause", "s": round(rng.uniform(0, 0.03), 3)})
        elif op == "invalid":
            steps.append(edit(valid=False))
        elif op == "delete":
            steps.append({"op": "delete"})
            deleted = True
        elif op == "restore":
            steps.append(edit(valid=rng.random() < 0.85, method="rename"))
            steps[-1]["op"] = "restore"
            deleted = False
        elif op in ("sighup", "restart", "reload"):
            steps.append({"op": op})
        elif op == "daemon_kill":
            if rng.random() < 0.6:
                steps.append(edit())  # something for the pass it cuts short to push
            steps.append({"op": "daemon_kill", "delay_ms": rng.choice([0, 1, 2, 5, 10, 20, 50, 150])})
            daemon_stopped = False
        elif op == "daemon_stop":
            steps.append({"op": "daemon_stop"})
            daemon_stopped = True
        elif op == "daemon_cont":
            steps.append({"op": "daemon_cont"})
            daemon_stopped = False
        elif op in ("server_kill", "server_stop", "node_down"):
            node = rng.choice([i for i, s in enumerate(node_state) if s == "up"])
            if op == "server_stop":
                # Hung for longer than request_timeout, sometimes longer than WatchdogSec.
                hold = rng.uniform(request_timeout + 0.5, request_timeout + 2) if rng.random() < 0.6 else \
                    rng.uniform(watchdog_sec + 1, watchdog_sec + 3)
                steps.append({"op": "server_stop", "node": node, "hold": round(hold, 2)})
                node_state[node] = "stopped"
            else:
                hold = rng.uniform(0.2, 3) if op == "server_kill" else rng.uniform(3, 15)
                steps.append({"op": "server_kill", "node": node, "signal": "KILL" if op == "server_kill" else "TERM",
                              "hold": round(hold, 2)})
                node_state[node] = "down"
        elif op == "server_start":
            node = rng.choice([i for i, s in enumerate(node_state) if s == "down"])
            steps.append({"op": "server_start", "node": node})
            node_state[node] = "up"
        elif op == "server_cont":
            node = rng.choice([i for i, s in enumerate(node_state) if s == "stopped"])
            steps.append({"op": "server_cont", "node": node})
            node_state[node] = "up"
        elif op == "foreign_export":
            account = rng.choice(POOL)
            exports[account] = exports.get(account, 0) + 1
            if exports[account] > FOREIGN_EXPORTS_MAX:
                continue
            foreign_n += 1
            steps.append({"op": "foreign_export", "account": account, "subject": "foreign.%d.%d" % (
                seed % 100000, foreign_n), "node": rng.randrange(nodes)})
        elif op == "foreign_drift":
            steps.append({"op": "foreign_drift", "account": rng.choice(POOL), "node": rng.randrange(nodes),
                          "patch": {"limits": rng.choice([{"streams": rng.randint(1, 9)},
                                                          {"conn": rng.randint(50, 60)},
                                                          {"disk_storage": rng.randint(1, 9) * MiB}])}})
        elif op == "pause":
            s = rng.uniform(0.05, 1.5) if rng.random() < 0.8 else rng.uniform(2, 6)
            steps.append({"op": "pause", "s": round(s, 2)})
        next_check -= 1
        if next_check <= 0:
            steps.append({"op": "check"})
            node_state = ["up"] * nodes
            daemon_stopped = False
            next_check = rng.randint(4, 12)
    if not steps or steps[-1]["op"] != "check":
        steps.append({"op": "check"})
    return {"seed": seed, "topology": topology, "runner": runner, "mode": mode,
            "initial": render(initial, rng), "initial_model": initial, "steps": steps}
