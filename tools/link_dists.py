"""Hard-link installed distributions, and everything they require, into another venv (`make test-wheel`).

    .venv/bin/python tools/link_dists.py build/wheel-venv/bin/python torch torchvision

Run with the Python that has them installed; the first argument is the Python of the target venv.
A CUDA build of torch with its libraries is about 5 GB, and a second copy of it for the clean venv of
`make test-wheel` once filled a CI machine's disk (stop 22). Hard links take no space. Their
.dist-info folders come along, so pip in the target sees torch installed, checks it against the wheel's
range and installs everything else the wheel asks for itself, as on Colab, where torch is there first.
Only files inside site-packages are linked (a console script's first line names this Python), and none
of a distribution the target has already (a new venv's setuptools: pip upgrades it where torch needs a
newer one). Where the two venvs lie on different disks (or hard links are not allowed), the files are
copied; any other failure to link is a one-line error. Prints what it linked; exits 1 on a failure.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# Why os.link can fail where a copy is right: another disk, or a file system that has no hard links.
COPY_ON = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP}


def closure(names: list[str]) -> list[metadata.Distribution]:
    """The installed distributions ``names`` and, recursively, what they require (markers evaluated here)."""
    found: dict[str, metadata.Distribution] = {}
    todo = list(names)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in found:
            continue
        try:
            found[name] = dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            sys.exit(f"error: {name} is not installed in {sys.prefix}; install it there first (make setup)")
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return list(found.values())


def main() -> int:
    if len(sys.argv) < 3:
        sys.exit(__doc__.split("\n\n")[1].strip())
    target_python, names = sys.argv[1], sys.argv[2:]
    ask = ("import json, sysconfig; from importlib import metadata; print(json.dumps([sysconfig.get_path('purelib'),"
           " [d.metadata['Name'] for d in metadata.distributions()]]))")
    purelib, there = json.loads(subprocess.run([target_python, "-c", ask], capture_output=True, text=True,
                                               check=True).stdout)
    target, there = Path(purelib), {canonicalize_name(name) for name in there}
    # What the target has already (a new venv's pip and setuptools) stays: pip upgrades it where needed.
    dists = [dist for dist in closure(names) if canonicalize_name(dist.metadata["Name"]) not in there]
    files = copied = 0
    for dist in dists:
        for file in dist.files or []:
            source = Path(dist.locate_file(file))
            if file.parts[0] == ".." or not source.is_file():
                continue  # a console script outside site-packages, or a listed .pyc never written
            destination = target / file
            destination.parent.mkdir(parents=True, exist_ok=True)
            if destination.is_file():
                destination.unlink()  # a second run: link it afresh, never copy over it
            try:
                os.link(source, destination)
            except OSError as error:
                if error.errno not in COPY_ON:
                    sys.exit(f"error: cannot link {source} to {destination}: {error}")
                shutil.copy2(source, destination)  # another disk, or a file system without hard links
                copied += 1
            files += 1
    print(f"linked {files} files ({copied} copied) of {', '.join(sorted(d.metadata['Name'] for d in dists))}"
          f" into {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
