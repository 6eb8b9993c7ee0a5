#!/usr/bin/env bash
# Build the agent's container image (deploy/container/Containerfile), as root:
#
#   deploy/container/build-image.sh [--tag TAG] [--base IMAGE] [--wheelhouse DIR] [-- PODMAN_BUILD_ARGS...]
#
# On this machine it compiles the BPF programs once (bcc, kernel headers: scripts/install.sh
# installs both) and builds the wheels; the image gets their results and neither a compiler
# nor headers. --wheelhouse: take the dependencies' wheels from DIR (no network). Uses podman,
# or docker when there is no podman.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
tag=localhost/cicd-audit:latest
base=""
wheelhouse=""
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) tag=$2; shift 2 ;;
    --base) base=$2; shift 2 ;;
    --wheelhouse) wheelhouse=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "build-image.sh: unknown argument $1 (see the comment at the top)" >&2; exit 2 ;;
  esac
done
engine=$(command -v podman || command -v docker || true)
if [ -z "$engine" ]; then
  echo "build-image.sh: needs podman or docker" >&2
  exit 3
fi
cicd_audit=${CICD_AUDIT:-$(command -v cicd-audit || echo /opt/cicd-audit/venv/bin/cicd-audit)}
pip="$(dirname "$(readlink -f "$cicd_audit")")/pip"

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
"$cicd_audit" prepare --prebuilt "$ctx/prebuilt"
if [ -n "$wheelhouse" ]; then
  "$pip" wheel -q --no-deps --no-build-isolation -w "$ctx/wheels" "$repo"
  # The dependencies from there; cicd-audit's own wheel always from this tree.
  find "$wheelhouse" -maxdepth 1 -name '*.whl' ! -name 'cicd_audit-*' -exec cp {} "$ctx/wheels/" \;
else
  "$pip" wheel -q -w "$ctx/wheels" "$repo"
fi
cp "$here/Containerfile" "$ctx/Containerfile"
"$engine" build ${base:+--build-arg "BASE=$base"} -t "$tag" -f "$ctx/Containerfile" "$@" "$ctx"
echo "build-image.sh: built $tag"
