#!/usr/bin/env bash
# Build the Go programs the tests use (tools/go-pins.txt, and Go modules under
# tests/) into a cache folder outside the repository, once per version, and
# print where they are. Only tests use them; the product stays C.
#
#   tools/go-tools.sh                  every pinned program: "NAME VERSION PATH" lines
#   tools/go-tools.sh servers          the nats-server matrix only: "VERSION PATH" lines
#   tools/go-tools.sh path NAME [VER]  the path of one pinned program (first pin of NAME without VER)
#   tools/go-tools.sh local DIR        build the Go module in DIR (e.g. tests/jwtcheck); print its binary
#
# Cache: $NATS_ACCOUNTD_GO_CACHE, default ${XDG_CACHE_HOME:-$HOME/.cache}/nats-accountd-go.
# Go: $GO, else go on PATH, else /usr/local/go/bin/go. Without Go: one line on
# stderr and exit 77, so callers can skip what needs these programs.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
pins=$here/go-pins.txt
cache=${NATS_ACCOUNTD_GO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nats-accountd-go}

go=${GO:-$(command -v go 2>/dev/null || true)}
[ -n "$go" ] || go=/usr/local/go/bin/go
if ! [ -x "$go" ]; then
        echo "go-tools: Go not found (set GO or install Go): the nats-server matrix and the Go oracles are skipped" >&2
        exit 77
fi
# Never fetch another toolchain behind the caller's back; a pin that needs a
# newer Go fails with the Go command's own message.
export GOTOOLCHAIN=${GOTOOLCHAIN:-local} GOFLAGS=-mod=mod

mkdir -p "$cache" || exit 1
exec 9>"$cache/.lock"

die() {
        echo "go-tools: $*" >&2
        exit 1
}

# Pins as "NAME VERSION MODULE PACKAGE" lines, comments dropped.
pin_lines() {
        sed -e 's/#.*//' "$pins" | awk 'NF == 4 { print $1, $2, $3, $4 }'
}

# build_pin NAME VERSION MODULE PACKAGE -> prints the binary's path.
# A throw-away module requiring MODULE@VERSION, then `go build` of PACKAGE:
# `go install pkg@version` would also ask the proxy for the module's version
# list (for deprecation notices), which the proxy refuses for some modules.
build_pin() {
        local name=$1 version=$2 module=$3 package=$4
        local dir=$cache/$name-$version bin=$cache/$name-$version/$name
        if [ -x "$bin" ]; then
                echo "$bin"
                return 0
        fi
        flock 9
        if [ ! -x "$bin" ]; then
                local work log=$cache/$name-$version.log
                work=$(mktemp -d "$cache/.build.XXXXXX") || return 1
                printf 'module accountd-go-tool\n\ngo 1.21\n\nrequire %s %s\n' "$module" "$version" >"$work/go.mod"
                local target=$module
                [ "$package" = . ] || target=$module/$package
                printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$target" >"$work/tools.go"
                echo "go-tools: building $name $version ($target) into $dir" >&2
                mkdir -p "$dir"
                if ! (cd "$work" && "$go" build -trimpath -o "$bin.tmp" "$target") >"$log" 2>&1; then
                        tail -20 "$log" >&2
                        rm -rf "$work" "$bin.tmp"
                        flock -u 9
                        die "building $name $version failed (log: $log)"
                fi
                mv "$bin.tmp" "$bin"
                rm -rf "$work"
        fi
        flock -u 9
        echo "$bin"
}

# build_local DIR -> prints the binary's path, keyed by the content of DIR.
build_local() {
        local src
        src=$(cd "$1" 2>/dev/null && pwd) || die "no such folder: $1"
        [ -f "$src/go.mod" ] || die "$src has no go.mod"
        local name hash
        name=$(basename "$src")
        hash=$(cd "$src" && find . -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) -print0 |
                sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
        local dir=$cache/local-$name-$hash bin=$cache/local-$name-$hash/$name
        if [ ! -x "$bin" ]; then
                flock 9
                if [ ! -x "$bin" ]; then
                        echo "go-tools: building $src into $dir" >&2
                        mkdir -p "$dir"
                        # Our module's go.sum is committed: build from it as it is.
                        if ! (cd "$src" && GOFLAGS=-mod=readonly "$go" build -trimpath -o "$bin.tmp" .) >"$dir.log" 2>&1; then
                                tail -20 "$dir.log" >&2
                                rm -f "$bin.tmp"
                                flock -u 9
                                die "building $src failed (log: $dir.log)"
                        fi
                        mv "$bin.tmp" "$bin"
                fi
                flock -u 9
        fi
        echo "$bin"
}

case ${1:-all} in
all)
        pin_lines | while read -r name version module package; do
                bin=$(build_pin "$name" "$version" "$module" "$package") || exit 1
                echo "$name $version $bin"
        done
        ;;
servers)
        pin_lines | while read -r name version module package; do
                [ "$name" = nats-server ] || continue
                bin=$(build_pin "$name" "$version" "$module" "$package") || exit 1
                echo "${version#v} $bin"
        done
        ;;
path)
        [ $# -ge 2 ] || die "usage: go-tools.sh path NAME [VERSION]"
        line=$(pin_lines | awk -v n="$2" -v v="${3:-}" '$1 == n && (v == "" || $2 == v || $2 == "v" v) { print; exit }')
        [ -n "$line" ] || die "$2${3:+ $3} is not pinned in $pins"
        # shellcheck disable=SC2086
        build_pin $line
        ;;
local)
        [ $# -ge 2 ] || die "usage: go-tools.sh local DIR"
        case $2 in /*) d=$2 ;; *) d=$top/$2 ;; esac
        build_local "$d"
        ;;
*)
        die "unknown command ${1}; see the top of $0"
        ;;
esac
