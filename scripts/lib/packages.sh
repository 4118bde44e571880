#!/usr/bin/env bash
# Installs the Debian packages named as arguments when any is missing; quiet when all are there.
ensure_packages() {
    local missing=() package
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0

    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "Installing Debian packages: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# What building and testing the gateway needs besides the Swift toolchain.
GATEWAY_BUILD_PACKAGES=(pkg-config libmicrohttpd-dev libcurl4-openssl-dev ca-certificates python3 python3-venv curl
    rsyslog prometheus openssl)
