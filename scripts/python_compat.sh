#!/usr/bin/env bash
# Run the test suite's pure tier under another Debian release's Python, in a chroot (as root):
#
#   scripts/python_compat.sh [--suite bullseye] [--root DIR]
#
# bullseye is Python 3.9, the oldest setup.cfg supports. The chroot (debootstrap: python3, venv,
# gcc for the ABI probe) and its venv (the package's dependencies at their newest releases for that
# Python, from PyPI, trusting what this host trusts) are made once under --root and reused; the
# working tree is copied in fresh each run, ../shared mounted read-only beside it. Tiers that load
# BPF programs (root, netns) need bcc, which this chroot does not carry; the host's runs cover them.
set -euo pipefail

suite=bullseye
root=""
while [ $# -gt 0 ]; do
  case "$1" in
    --suite) suite=$2; shift 2 ;;
    --root) root=$2; shift 2 ;;
    *) echo "python_compat.sh: unknown argument $1 (see the comment at the top)" >&2; exit 2 ;;
  esac
done
repo=$(cd "$(dirname "$0")/.." && pwd)
root=${root:-/var/cache/cicd-audit/python-$suite}
mirror=http://deb.debian.org/debian

if [ ! -x "$root/venv/bin/pytest" ]; then
  rm -rf "$root"
  debootstrap --variant=minbase --include=python3,python3-venv,gcc,libc6-dev "$suite" "$root" "$mirror" >/dev/null
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  chroot "$root" /usr/bin/python3 -m venv /venv
  deps=$(cd "$repo" && python3 -c 'import configparser; c = configparser.ConfigParser(); c.read("setup.cfg"); print(" ".join(l.strip() for l in c["options"]["install_requires"].splitlines() if l.strip()))')
  # shellcheck disable=SC2086
  chroot "$root" /venv/bin/pip install -q $deps pytest "setuptools>=64" wheel
fi

mounted=()
cleanup() {
  for ((i=${#mounted[@]}-1; i>=0; i--)); do umount -R "${mounted[$i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
rm -rf "$root/w"
mkdir -p "$root/w/main" "$root/w/shared" "$root/proc" "$root/sys"
(cd "$repo" && git ls-files -z | xargs -0 tar -c) | tar -x -C "$root/w/main"
mount --bind -o ro "$repo/../shared" "$root/w/shared"; mounted+=("$root/w/shared")
mount -t proc proc "$root/proc"; mounted+=("$root/proc")
mount --rbind /sys "$root/sys"; mount --make-rslave "$root/sys"; mounted+=("$root/sys")   # cgroups, CPUs
chroot "$root" /venv/bin/pip install -q --no-deps --no-build-isolation /w/main
python=$(chroot "$root" /venv/bin/python -c 'import sys; print(".".join(map(str, sys.version_info[:3])))')
echo "python_compat.sh: Debian $suite, Python $python"
# The notebook, fleet (Dask) and Kubernetes tests need extras this chroot does not install; the lint
# runs on the host (ruff targets 3.9 already).
chroot "$root" /bin/sh -c "cd /w/main && PYTHONDONTWRITEBYTECODE=1 /venv/bin/python -m pytest -q -p no:cacheprovider \
  -m 'not root and not netns' --ignore=tests/fleet --ignore=tests/analyze/test_notebook.py \
  --ignore=tests/test_k8s_manifests.py --ignore=tests/test_lint.py"
