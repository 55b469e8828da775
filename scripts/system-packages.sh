#!/usr/bin/env bash
# Install the Debian packages milkprice drives when they are missing: the set-up step of
# `make test` (chromium for the browser tests, postgresql for the cluster tests) and of
# `make up STACK=cluster` (postgresql). Library code never installs anything.
#
# Usage: scripts/system-packages.sh PACKAGE...   (known: chromium, postgresql)
# Installs only as root with apt-get. Otherwise it names what is missing and exits 0: the
# tests that need a package then fail with the same advice, and the rest still run.
set -euo pipefail

has_package() {
    case "$1" in
        chromium) [[ -x /usr/bin/chromium ]] ;;
        postgresql) compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null \
            || command -v initdb >/dev/null ;;
        *) echo "system-packages: unknown package '$1' (known: chromium, postgresql)" >&2; exit 2 ;;
    esac
}

missing=()
for package in "$@"; do
    has_package "$package" || missing+=("$package")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
    echo "system-packages: missing ${missing[*]}; install them (Debian: sudo apt-get install -y ${missing[*]})" >&2
    exit 0
fi
echo "system-packages: installing ${missing[*]} with apt-get"
export DEBIAN_FRONTEND=noninteractive
# A fresh image has no package lists yet: update first when the install cannot find them.
if ! apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1; then
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}"
fi
for package in "${missing[@]}"; do
    has_package "$package" || { echo "system-packages: apt-get installed $package but it is still missing" >&2; exit 1; }
done
