#!/usr/bin/env bash
# Install cicd-audit and everything it needs on Debian 12 / Ubuntu 22.04+ (run as root).
#
#   OS packages: bcc's Python bindings (python3-bpfcc; PyPI's "bcc" is an unrelated
#   project), kernel headers (the running kernel's, else the distribution's newest:
#   TC programs use only the stable UAPI), iproute2, and the tools the demo and
#   tests use. Python: a venv that sees the system's bcc, with cicd-audit in it,
#   and /usr/local/bin/cicd-audit.
#
# Options: --test   install for development and CI: editable (the tests and the
#                  `cicd-audit` command run the working tree, so an edit is seen at
#                  once), with the test dependencies (pytest, ruff, notebook tools)
set -euo pipefail

VENV=${CICD_AUDIT_VENV:-/opt/cicd-audit/venv}
here=$(cd "$(dirname "$0")/.." && pwd)
with_test=0
[ "${1:-}" = "--test" ] && with_test=1

if [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run as root (it installs OS packages)" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# gcc and python3-dev build the C parts of the per-frame and per-message paths (setup.py); without them they run in pure Python.
apt-get install -y -qq --no-install-recommends \
  python3 python3-venv python3-pip python3-dev python3-bpfcc iproute2 gcc libc6-dev \
  dnsmasq dnsutils curl iperf3 tshark tcpreplay iodine dns2tcp nodejs >/dev/null
# Headers for the running kernel if the distribution has them, else its generic ones.
if ! apt-get install -y -qq --no-install-recommends "linux-headers-$(uname -r)" >/dev/null 2>&1; then
  arch=$(dpkg --print-architecture)
  apt-get install -y -qq --no-install-recommends "linux-headers-${arch}" >/dev/null 2>&1 \
    || apt-get install -y -qq --no-install-recommends linux-headers-generic >/dev/null
fi

/usr/bin/python3 -m venv --system-site-packages "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
if [ "$with_test" = 1 ]; then
  "$VENV/bin/pip" install -q --editable "$here[test,notebook,fleet]"
else
  "$VENV/bin/pip" install -q "$here"
fi
ln -sf "$VENV/bin/cicd-audit" /usr/local/bin/cicd-audit
if [ "$with_test" = 1 ]; then
  # The container image test (tests/test_container_image.py) builds offline: a Debian base image made
  # from Debian's packages (no image registry needed) and a wheelhouse of the package's dependencies.
  # debian-archive-keyring: Debian's packages (base image, kernels) verify on Ubuntu hosts too.
  apt-get install -y -qq --no-install-recommends podman runc debootstrap debian-archive-keyring >/dev/null
  # The HTML report's browser tests (tests/analyze/test_report_browser.py) open it in headless chromium.
  apt-get install -y -qq --no-install-recommends chromium >/dev/null
  if ! podman image exists localhost/cicd-audit-base:bookworm; then
    "$here/deploy/container/debian-base.sh" --tag localhost/cicd-audit-base:bookworm
  fi
  "$VENV/bin/pip" wheel -q -w /var/cache/cicd-audit/wheelhouse "$here"
  rm -f /var/cache/cicd-audit/wheelhouse/cicd_audit-*.whl     # the image builds its own from the tree
  # The kernel matrix test boots Debian's newest (backports), 6.1 and 5.10 kernels and Ubuntu 24.04's
  # (qemu, virtme-ng): fetched now.
  "$VENV/bin/python" "$here/scripts/kernel_matrix.py" --setup --download-only --kernels newest,6.1,5.10,ubuntu-24.04
fi
# Compile the BPF program now (live, and pcap with/without -C) into /var/cache/cicd-audit/programs,
# so `record` loads it in ~0.1 s instead of compiling for 1.5-4 s. Needs BPF privileges (not in a
# container build): if it cannot run here, the first record of each kind compiles and caches instead.
if ! /usr/local/bin/cicd-audit prepare; then
  echo "install.sh: warning: could not prepare the BPF program; the first 'cicd-audit record' will compile it" >&2
fi
echo "cicd-audit installed: $(/usr/local/bin/cicd-audit --version)"
