"""Check what `python -m build` made (`make dist` runs this after `twine check`).

    python tools/check_dist.py dist

One sdist and one wheel of this version; both carry the package data (vit_lesson/assets/*.pt)
and the LICENSE; the wheel has the package only; the sdist has the whole course (notebooks, tests).
Prints one line per file; exits 1 with the reason if anything is missing.
"""

from __future__ import annotations

import re
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(folder: str = "dist") -> int:
    version = re.search(r'__version__ = "([^"]+)"', (ROOT / "vit_lesson" / "__init__.py").read_text()).group(1)
    assets = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "vit_lesson" / "assets").glob("*.pt"))
    wheels = sorted(Path(folder).glob("*.whl"))
    sdists = sorted(Path(folder).glob("*.tar.gz"))
    problems = []
    if [w.name for w in wheels] != [f"vit_lesson-{version}-py3-none-any.whl"]:
        problems.append(f"expected one wheel vit_lesson-{version}-py3-none-any.whl, found {[w.name for w in wheels]}")
    if [s.name for s in sdists] != [f"vit_lesson-{version}.tar.gz"]:
        problems.append(f"expected one sdist vit_lesson-{version}.tar.gz, found {[s.name for s in sdists]}")
    for wheel in wheels:
        names = set(zipfile.ZipFile(wheel).namelist())
        missing = [a for a in assets if a not in names]
        missing += [] if any(n.endswith(".dist-info/licenses/LICENSE") for n in names) else ["LICENSE"]
        extra = sorted({n.split("/")[0] for n in names} - {"vit_lesson", f"vit_lesson-{version}.dist-info"})
        problems += [f"{wheel.name} lacks {m}" for m in missing] + [f"{wheel.name} has {e}" for e in extra]
        print(f"{wheel.name}: {len(names)} files, {', '.join(assets)} included")
    for sdist in sdists:
        prefix = f"vit_lesson-{version}/"
        names = {n.removeprefix(prefix) for n in tarfile.open(sdist).getnames()}
        wanted = [*assets, "LICENSE", "CITATION.cff", "pyproject.toml", "notebooks/00_start_here.ipynb",
                  "tests/conftest.py", "constraints.txt", "constraints-floor.txt"]
        problems += [f"{sdist.name} lacks {w}" for w in wanted if w not in names]
        print(f"{sdist.name}: {len(names)} files, {', '.join(assets)} included")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
