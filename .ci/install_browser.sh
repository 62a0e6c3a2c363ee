#!/usr/bin/env bash
# Install Debian's Chromium (/usr/bin/chromium) for tests/test_browser.py. Idempotent: does
# nothing when it is already there. Needs root (CI containers run as root) or sudo.
# Playwright drives this system browser through `executable_path`; never run `playwright install`.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    echo "chromium already installed: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
echo "installed: $(/usr/bin/chromium --version)"
