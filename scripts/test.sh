#!/usr/bin/env bash
# Install everything the tests need, then run them. README's second set-up command.
# System packages are installed with apt only when missing: openssh-server/-client (the tests
# run a real sshd on loopback) and the shells the portability tests log in with (busybox, mksh,
# posh, yash; tests/test_shells.py, one sshd node per shell; a missing shell skips its tests),
# and chromium with its driver (tests/test_web.py drives the browser view in a real browser).
set -euo pipefail
cd "$(dirname "$0")/.."

# package:command pairs; a package is wanted when its command is not found
WANT=""
for pair in openssh-server:/usr/sbin/sshd openssh-client:ssh busybox:busybox mksh:mksh posh:posh yash:yash \
            chromium:chromium chromium-driver:chromedriver; do
    pkg=${pair%%:*}
    cmd=${pair#*:}
    if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "$cmd" ] && [ ! -x "/usr/sbin/$cmd" ] && [ ! -x "/bin/$cmd" ]; then
        WANT="$WANT $pkg"
    fi
done
if [ -n "$WANT" ]; then
    echo "scripts/test.sh: installing$WANT"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086 # one word per package
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $WANT >/dev/null
fi

python3 -m pip install -q --disable-pip-version-check -e '.[test]'
# Lint first: errors and likely bugs only ([tool.ruff.lint] in pyproject.toml), never style.
python3 -m ruff check --quiet pltui tests bench
# The engine's types ([tool.mypy] in pyproject.toml lists its modules).
python3 -m mypy
exec python3 -m pytest -q -n 2 --dist loadgroup "$@"  # loadgroup: test_shells.py shares one fleet
