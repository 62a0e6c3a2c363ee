"""The real nbgrader, on a notebook stamped by ``python -m vit_lesson nbgrader-stamp`` (issue 15, part 7).

In a temporary course folder: ``nbgrader generate_assignment`` makes the learner version (the
solutions replaced by nbgrader's stub, so its checks say "not done yet"); ``nbgrader autograde``
with ``VIT_LESSON_CHECKS_RAISE=1`` gives the teacher's solution full points, the learner version
none, a half-done one half; ``nbgrader export`` writes the grades. The notebook is made up, in the
course's format (a demonstration of a wrong answer, two exercises, two check cells), so the test
takes about 30 s whatever the lessons become.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from vit_lesson.__main__ import main

pytest.importorskip("nbgrader")

SOLUTION_0_1 = "    return (image_size // patch_size) ** 2\n"
SOLUTION_1_1 = ("    B, C, H, W = images.shape\n"
                "    x = images.reshape(B, C, H // patch_size, patch_size, W // patch_size, patch_size)\n"
                "    return x.permute(0, 2, 4, 1, 3, 5).reshape(B, -1, C * patch_size * patch_size)\n")


def lesson() -> nbformat.NotebookNode:
    return new_notebook(cells=[
        new_markdown_cell("# A tiny lesson\n\nTwo exercises, each with its check."),
        new_code_cell("from vit_lesson import checks"),
        new_code_cell("def num_patches_wrong(image_size, patch_size):  # a demonstration: not graded\n"
                      "    return image_size // patch_size\n\nchecks.check_num_patches(num_patches_wrong)"),
        new_code_cell("# Exercise 0.1 — number of patches of a square image.\n"
                      "def num_patches(image_size, patch_size):\n"
                      "    # Hint: How many patches fit along one side of the image? The grid is square.\n"
                      f"    ### BEGIN SOLUTION\n{SOLUTION_0_1}    ### END SOLUTION"),
        new_code_cell("checks.check_num_patches(num_patches)"),
        new_code_cell("# Exercise 1.1 — patchify.\ndef patchify(images, patch_size):\n"
                      f"    ### BEGIN SOLUTION\n{SOLUTION_1_1}    ### END SOLUTION"),
        new_code_cell("checks.check_patchify(patchify)"),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})


def nbgrader(course: Path, *args: str, raise_checks: bool = False) -> str:
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
               JUPYTER_CONFIG_DIR=str(course / ".jupyter"))  # nbgrader runs `alembic` from PATH
    env.pop("VIT_LESSON_CHECKS_RAISE", None)
    if raise_checks:
        env["VIT_LESSON_CHECKS_RAISE"] = "1"
    done = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def printed(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    return "".join("".join(o.get("text", "")) for c in cells for o in c.get("outputs", []) if o.get("name") == "stdout")


def test_generate_assignment_and_autograde(tmp_path):
    course = tmp_path / "course"
    source = course / "source" / "ps1"
    source.mkdir(parents=True)
    (course / "nbgrader_config.py").write_text('c = get_config()\nc.CourseDirectory.course_id = "vit_lesson"\n')
    nbformat.write(lesson(), source / "tiny.ipynb")
    assert main(["nbgrader-stamp", str(source / "tiny.ipynb")]) == 0
    stamped = nbformat.read(source / "tiny.ipynb", as_version=4)
    graded = [bool(c.metadata["nbgrader"]["grade"]) for c in stamped.cells]
    assert graded == [False, False, False, False, True, False, True]

    nbgrader(course, "generate_assignment", "ps1")
    release = course / "release" / "ps1" / "tiny.ipynb"
    learner = nbformat.read(release, as_version=4)
    assert "BEGIN SOLUTION" not in release.read_text() and SOLUTION_0_1 not in release.read_text()
    assert learner.cells[3].source.endswith("raise NotImplementedError()")

    half = nbformat.read(release, as_version=4)  # 0.1 done, 1.1 not
    half.cells[3].source = half.cells[3].source.replace("raise NotImplementedError()", SOLUTION_0_1.strip())
    for student, notebook in (("teacher", source / "tiny.ipynb"), ("learner", release), ("half", None)):
        (course / "submitted" / student / "ps1").mkdir(parents=True)
        if notebook is None:
            nbformat.write(half, course / "submitted" / student / "ps1" / "tiny.ipynb")
        else:
            shutil.copy(notebook, course / "submitted" / student / "ps1" / "tiny.ipynb")
    nbgrader(course, "autograde", "ps1", "--create", raise_checks=True)
    nbgrader(course, "export", "--to", "grades.csv")

    with open(course / "grades.csv", newline="") as file:
        grades = {row["student_id"]: (float(row["score"]), float(row["max_score"])) for row in csv.DictReader(file)}
    assert grades == {"teacher": (2.0, 2.0), "learner": (0.0, 2.0), "half": (1.0, 2.0)}
    out = printed(course / "autograded" / "learner" / "ps1" / "tiny.ipynb")
    assert "⏳ Exercise 0.1 (number of patches) is not done yet" in out
    assert "⏳ Exercise 1.1 (patchify) is not done yet" in out
    out = printed(course / "autograded" / "teacher" / "ps1" / "tiny.ipynb")
    assert "✅ Exercise 0.1" in out and "✅ Exercise 1.1" in out
