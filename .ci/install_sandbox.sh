#!/usr/bin/env bash
# Install bubblewrap (/usr/bin/bwrap), the grader's sandbox (vit_lesson/grading/sandbox.py) that
# tests/test_grading_sandbox.py proves. Idempotent: does nothing when it is already there.
# Needs root (CI containers run as root) or sudo. Without it the grader falls back to its
# weaker "process" sandbox, and the bubblewrap tests fail in CI (VIT_LESSON_REQUIRE_BWRAP=1) instead of skipping.
set -euo pipefail
if command -v bwrap >/dev/null 2>&1; then
    echo "bubblewrap already installed: $(bwrap --version)"
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends bubblewrap >/dev/null
echo "installed: $(bwrap --version)"
