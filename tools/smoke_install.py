"""Prove an installed course works from an empty folder (`make test-wheel`, `make test-floor`).

    VENV/bin/python tools/smoke_install.py

Run with the Python of the environment to check. In a temporary empty folder (so nothing of the
repository is importable) it runs ``vit-lesson --help``, ``vit-lesson train --data digits
--epochs 1`` and ``vit-lesson evaluate`` on the checkpoint written, imports every module of the
package, and, where the [teacher] extra is not installed, checks that ``vit-lesson stamp`` fails
with one line naming it. Prints what it ran with the seconds each took; exits 1 on a failure.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Modules that need an extra, until they import it lazily (reported, not failed): none may be listed
# here for good; see issue 14 (vit_lesson/visualize.py imports ipywidgets at the top).
IMPORTS_AN_EXTRA_AT_THE_TOP: dict = {}  # module -> the extra it needs at import time (none now)


def run(*command: str, cwd: Path, expect: int = 0) -> str:
    start = time.monotonic()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=900,
                            env={**os.environ, "PYTHONPATH": ""})
    shown = " ".join(command[1:] if command[0] == sys.executable else command)
    print(f"{time.monotonic() - start:6.1f} s  {shown}  -> exit {result.returncode}")
    if result.returncode != expect:
        sys.exit(f"error: `{shown}` exited {result.returncode} (expected {expect}):\n{result.stdout}\n{result.stderr}")
    return result.stdout + result.stderr


def main() -> int:
    script = Path(sys.executable).parent / "vit-lesson"
    with tempfile.TemporaryDirectory() as folder:
        here = Path(folder)
        where = run(sys.executable, "-c", "import vit_lesson, torch, torchvision; print(vit_lesson.__file__, "
                    "vit_lesson.__version__, torch.__version__, torchvision.__version__)", cwd=here)
        print(f"         {where.strip()}")
        if not where.startswith(sys.prefix):
            sys.exit(f"error: vit_lesson was not imported from this environment ({sys.prefix}): {where}")
        assert "train" in run(str(script), "--help", cwd=here)
        run(str(script), "train", "--data", "digits", "--epochs", "1", "--out", "run", "--no-progress", cwd=here)
        assert "accuracy" in run(str(script), "evaluate", "--checkpoint", "run/best.pt", cwd=here)
        if importlib.util.find_spec("nbformat") is None:
            (here / "lesson.ipynb").write_text("{}")
            said = run(str(script), "stamp", "lesson.ipynb", cwd=here, expect=1)
            expected = ('error: nbformat is not installed; it comes with the [teacher] extra: '
                        'pip install "vit_lesson[teacher]"')
            if said.strip() != expected:
                sys.exit(f"error: without nbformat, `vit-lesson stamp` should say which extra to install, "
                         f"said:\n{said}")
        import vit_lesson
        for module in pkgutil.walk_packages(vit_lesson.__path__, "vit_lesson."):
            try:
                importlib.import_module(module.name)
            except ModuleNotFoundError as error:
                if IMPORTS_AN_EXTRA_AT_THE_TOP.get(module.name) != error.name:
                    raise
                print(f"warning: {module.name} needs {error.name} at import time "
                      "(issue 14: import it where it is used)")
        print(f"ok: the installed course works from an empty folder ({sys.prefix})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
