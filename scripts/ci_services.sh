#!/usr/bin/env bash
# What the tests need from the system, from Debian's packages: mosquitto (a real MQTT broker the MQTT tests start on
# loopback), openssl (their TLS certificates), Aravis with its fake GigE Vision camera (the GenICam tests start it on
# loopback), what PyGObject builds against, and chromium with its driver (the line-side page's browser test). The tests start and stop these services themselves.
set -euo pipefail
PACKAGES=(mosquitto openssl aravis-tools gir1.2-aravis-0.8 libgirepository1.0-dev libcairo2-dev pkg-config gcc
          python3-dev chromium chromium-driver)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
