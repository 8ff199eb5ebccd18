#!/usr/bin/env bash
# What the tests need from the system: mosquitto (a real MQTT broker the MQTT tests start on loopback) and
# openssl (their TLS certificates), from Debian's packages. The tests start and stop the broker themselves.
set -euo pipefail
if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends mosquitto openssl >/dev/null
