#!/usr/bin/env bash
# Install what building, testing and packaging nats-accountd needs on Debian 12
# (debian/control's Build-Depends included), only what is missing.
set -eu
pkgs=(build-essential meson ninja-build pkg-config clang libclang-rt-14-dev
      libnats-dev libyaml-dev libsystemd-dev libinih-dev libsodium-dev libjansson-dev
      libcmocka-dev scdoc nats-server python3 systemd procps iproute2
      debhelper dpkg-dev fakeroot lintian)
missing=()
for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} = 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
        echo "install-deps: missing packages: ${missing[*]} (run as root to install them)" >&2
        exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
