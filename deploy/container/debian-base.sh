#!/usr/bin/env bash
# A Debian base image made from Debian's packages, for machines that reach a package mirror but no
# image registry (as root):
#
#   deploy/container/debian-base.sh [--tag TAG] [--suite bookworm] [--mirror http://deb.debian.org/debian]
#
# debootstrap (minbase, with python3 and python3-venv: what the Containerfile needs), then
# `podman import`. Build the agent's image on it with build-image.sh --base TAG.
set -euo pipefail

tag=localhost/cicd-audit-base:bookworm
suite=bookworm
mirror=http://deb.debian.org/debian
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) tag=$2; shift 2 ;;
    --suite) suite=$2; shift 2 ;;
    --mirror) mirror=$2; shift 2 ;;
    *) echo "debian-base.sh: unknown argument $1 (see the comment at the top)" >&2; exit 2 ;;
  esac
done
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv "$suite" "$root" "$mirror" >/dev/null
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
tar -C "$root" -c . | podman import -q - "$tag" >/dev/null
echo "debian-base.sh: imported $tag"
