#!/usr/bin/env bash
# Installs what hicached needs to build and test, and only what is missing
# (with --fuzz: what make fuzz needs).
# Idempotent; needs root (or sudo) only when something is missing.
set -euo pipefail

pkgs=(build-essential pkg-config libuv1-dev liburing-dev libprotobuf-c-dev protobuf-c-compiler
      libjansson-dev check clang-format libzstd-dev procps)
# --fuzz: what `make fuzz` needs besides (clang with libFuzzer)
if [ "${1:-}" = --fuzz ]; then
    pkgs=(clang libclang-rt-dev)
fi

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}"
    SUDO=
    if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
