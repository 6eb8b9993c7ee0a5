"""Find kernel headers bcc can compile against, even when none match the running kernel.

bcc builds its programs with the headers of /lib/modules/$(uname -r)/build.
CI runners and cloud VMs often run a kernel whose headers are not packaged
(custom builds, newer kernels than the distribution ships). TC programs only
use the stable UAPI (struct __sk_buff, protocol headers), so any installed
linux-headers-* tree will do. Debian and Ubuntu split such a tree into an
arch part (generated headers, .config) and a -common part; bcc's
BCC_KERNEL_SOURCE wants one directory, so we assemble a tree of symlinks
under a cache directory, touching nothing else on the system.
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path

USR_SRC = Path("/usr/src")
CACHE_DIR = Path(os.environ.get("CICD_AUDIT_CACHE", "/var/cache/cicd-audit"))
_NO_HEADERS_REASON = "the running kernel has no headers; TC programs use only the stable UAPI"


@dataclass(frozen=True)
class HeaderChoice:
    """Where bcc should look, and why (shown in --verbose output and errors)."""

    source: Path | None   # value for BCC_KERNEL_SOURCE, or None for bcc's default
    description: str


def running_kernel_build_dir(release: str | None = None) -> Path:
    return Path("/lib/modules") / (release or platform.release()) / "build"


def _version_key(name: str) -> tuple:
    return tuple(int(n) for n in re.findall(r"\d+", name))


def find_installed_header_trees(usr_src: Path = USR_SRC) -> list[tuple[Path, Path | None]]:
    """(arch tree, common tree or None) pairs, newest first.

    An arch tree is recognised by its generated autoconf.h; its -common sibling
    (Debian/Ubuntu) holds include/linux and friends.
    """
    trees = []
    for arch in sorted(usr_src.glob("linux-headers-*"), key=lambda p: _version_key(p.name), reverse=True):
        if not (arch / "include" / "generated" / "autoconf.h").exists():
            continue
        if (arch / "include" / "linux" / "kconfig.h").exists():
            trees.append((arch, None))          # a complete tree (Ubuntu's or a vanilla build)
            continue
        common = _common_sibling(arch)
        if common is not None:
            trees.append((arch, common))
    return trees


def _common_sibling(arch: Path) -> Path | None:
    makefile = arch / "Makefile"
    if makefile.exists():                       # Debian: "include /usr/src/linux-headers-X-common/Makefile"
        match = re.search(r"include\s+(\S+)/Makefile", makefile.read_text(errors="replace"))
        if match and Path(match.group(1)).is_dir():
            return Path(match.group(1))
    stem = re.sub(r"-[a-z0-9_]+$", "", arch.name)
    candidate = arch.parent / f"{stem}-common"
    return candidate if candidate.is_dir() else None


def merged_tree(arch: Path, common: Path, cache_dir: Path = CACHE_DIR) -> Path:
    """A directory that looks like one kernel build tree: symlinks into both parts."""
    target = cache_dir / "kernel-headers" / arch.name
    stamp = target / ".cicd-audit-merged"
    if stamp.exists():
        return target
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    for sub in ("include", "arch/x86/include", "arch/arm64/include"):
        parts = [p / sub for p in (common, arch) if (p / sub).is_dir()]
        if not parts:
            continue
        dest = tmp / sub
        dest.mkdir(parents=True, exist_ok=True)
        for part in parts:
            for entry in part.iterdir():
                link = dest / entry.name
                if not link.exists():
                    link.symlink_to(entry)
    for name in (".config", "Makefile", "Module.symvers"):
        for part in (arch, common):
            if (part / name).exists() and not (tmp / name).exists():
                (tmp / name).symlink_to(part / name)
    (tmp / ".cicd-audit-merged").write_text(f"{arch}\n{common}\n")
    if target.exists():                         # another recorder won the race
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
        return target
    tmp.rename(target)
    return target


def choose_headers(release: str | None = None, usr_src: Path = USR_SRC, cache_dir: Path = CACHE_DIR) -> HeaderChoice:
    """Pick the headers bcc will use: the running kernel's, else the newest installed tree."""
    if os.environ.get("BCC_KERNEL_SOURCE"):
        return HeaderChoice(Path(os.environ["BCC_KERNEL_SOURCE"]), "BCC_KERNEL_SOURCE from the environment")
    build = running_kernel_build_dir(release)
    if (build / "include").exists() or (build / "Makefile").exists():
        return HeaderChoice(None, f"headers of the running kernel ({build})")
    trees = find_installed_header_trees(usr_src)
    if not trees:
        return HeaderChoice(None, "no kernel headers found")
    arch, common = trees[0]
    if common is None:
        return HeaderChoice(arch, f"{arch.name} ({_NO_HEADERS_REASON})")
    return HeaderChoice(merged_tree(arch, common, cache_dir),
                        f"{arch.name} + {common.name} ({_NO_HEADERS_REASON})")
