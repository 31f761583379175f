#!/usr/bin/env bash
# Install headless Chromium (the Debian package `chromium`) for the HTML report test.
# Does nothing when a Chromium binary is already on the machine. Needs root (or sudo) and apt.
# Exit status: 0 when Chromium is available afterwards, 1 when it could not be installed.
set -euo pipefail

for candidate in "${SIDKIT_CHROMIUM:-}" /usr/bin/chromium /usr/bin/chromium-browser; do
  if [ -n "$candidate" ] && [ -x "$candidate" ]; then
    echo "chromium already installed: $candidate"
    exit 0
  fi
done

if ! command -v apt-get >/dev/null 2>&1; then
  echo "cannot install chromium: apt-get is not available on this system" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo="sudo -n"
  else
    echo "cannot install chromium: need root or passwordless sudo for apt-get" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core
if [ -x /usr/bin/chromium ]; then
  echo "installed: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
  exit 0
fi
echo "apt-get finished but /usr/bin/chromium is missing" >&2
exit 1
