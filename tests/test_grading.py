"""Teacher grading (`python -m vit_lesson grade`): one bad submission never stops the others,
and no submission can earn what its answers do not.

The fixture builds a class of tiny submissions of one notebook, ``00_demo``, with two of the
course's exercises (0.1 number of patches, 1.1 patchify; the solution notebook's stored check
lines say which exercises it has). The learners: one who passes, one with a wrong answer and a cell
that raises, one who has not started, one whose notebook kills its kernel, one stuck in a loop,
one whose file is not JSON, one who deleted a check cell, one who handed nothing in, and the
cheats of issue 15: a hand-printed ✅ line, a passing result appended to ``RESULTS``, a patched
``CheckResult``, a patched ``print``, cells tagged with grader-looking metadata, the package's
own ``patchify`` as the answer (alone, or in one extra check after a wrong answer of their own),
and a check of another notebook's exercise; and the forgeries of the grader's channel (issue 16): a
hand-made message in the agent's format claiming a pass, a forged answer, records written to files,
and the agent's hook replaced. A learner whose check cell runs under ``%%capture`` is still graded.
"""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

import nbformat
import pytest

from vit_lesson import grading
from vit_lesson.__main__ import main

NOTEBOOK = "00_demo"
TIMEOUT = 40  # seconds per notebook (cells only; kernel start-up is not counted)

SETUP = "from vit_lesson import checks"
RIGHT_NUM = "def num_patches(image_size, patch_size):\n    return (image_size // patch_size) ** 2"
WRONG_NUM = "def num_patches(image_size, patch_size):\n    return image_size // patch_size"
TODO_NUM = "def num_patches(image_size, patch_size):\n    raise NotImplementedError('Hint: count the rows.')"
RIGHT_PATCHIFY = ("def patchify(images, patch_size):\n    B, C, H, W = images.shape; P = patch_size\n"
                  "    x = images.reshape(B, C, H // P, P, W // P, P).permute(0, 2, 4, 1, 3, 5)\n"
                  "    return x.reshape(B, (H // P) * (W // P), C * P * P)")
WRONG_PATCHIFY = ("def patchify(images, patch_size):\n    B, C, H, W = images.shape; P = patch_size\n"
                  "    return images.reshape(B, (H // P) * (W // P), C * P * P)")
TODO_PATCHIFY = "def patchify(images, patch_size):\n    raise NotImplementedError('Hint: split, move, flatten.')"
CHECK_NUM, CHECK_PATCHIFY = "checks.check_num_patches(num_patches)", "checks.check_patchify(patchify)"
MIME = "application/vnd.vit-lesson.grader+json"  # the agent's messages (vit_lesson.checks.agent)
PASS_LINE = ("✅ Exercise 0.1 (number of patches) passed: 224 / 16 = 14 patches per side, 14² = 196 patches"
             " (and 3 more sizes).")


def notebook(*cells) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Demo")]
    for cell in cells:
        source, metadata = (cell, {}) if isinstance(cell, str) else cell
        nb.cells.append(nbformat.v4.new_code_cell(source, metadata=metadata))
    nb.metadata["kernelspec"] = {"name": "no-such-kernel", "display_name": "x", "language": "python"}
    return nb


def learner_notebook(num=RIGHT_NUM, patchify=RIGHT_PATCHIFY, between="", check_patchify=True, after=()):
    cells = [SETUP, num, CHECK_NUM, *([between] if between else []), patchify]
    return notebook(*cells, *([CHECK_PATCHIFY] if check_patchify else []), *after)


SUBMISSIONS = {
    "ada": learner_notebook(),
    "bob": learner_notebook(num=WRONG_NUM, between="print(undefined_name)"),
    "cyd": learner_notebook(TODO_NUM, TODO_PATCHIFY),
    "dee": learner_notebook(between="import os\nos._exit(1)"),
    "eve": learner_notebook(between="while True:\n    pass"),
    "fay": "{ this is not a notebook",
    "gus": learner_notebook(check_patchify=False),
    "hal": None,  # a folder with nothing handed in
    "ivy": notebook(SETUP, TODO_NUM, f"print({PASS_LINE!r})", RIGHT_PATCHIFY, CHECK_PATCHIFY),
    # cheats: none of them earns 0.1
    "jon": notebook(SETUP, RIGHT_PATCHIFY, CHECK_PATCHIFY,
                    "from vit_lesson.checks import core\n"
                    "core.RESULTS.append(core.CheckResult('0.1', 'number of patches', 'pass', 'ok'))"),
    "kim": notebook(SETUP, "from vit_lesson.checks import core\n"
                    "core.CheckResult.status = property(lambda self: 'pass', lambda self, value: None)",
                    WRONG_NUM, CHECK_NUM, RIGHT_PATCHIFY, CHECK_PATCHIFY),
    "lee": notebook(SETUP, WRONG_NUM, (
        "import builtins\n_print = builtins.print\n"
        "builtins.print = lambda *a, **k: _print(*[str(x).replace('❌', '✅') for x in a], **k)"),
        CHECK_NUM, RIGHT_PATCHIFY, CHECK_PATCHIFY),
    "mia": notebook(SETUP, (WRONG_NUM, {"vit_lesson_grader": True, "tags": ["skip-execution"]}),
                    (CHECK_NUM, {"vit_lesson_grader": True, "tags": ["skip-execution", "raises-exception"]}),
                    RIGHT_PATCHIFY, CHECK_PATCHIFY),
    "ned": notebook(SETUP, RIGHT_NUM, CHECK_NUM, "from vit_lesson.patches import patchify", CHECK_PATCHIFY),
    "oli": learner_notebook(patchify=WRONG_PATCHIFY,
                            after=("from vit_lesson.patches import patchify", CHECK_PATCHIFY)),
    "pat": learner_notebook(after=("import torch\ndef classify(tokens, norm, head):\n"
                                   "    return head(norm(tokens)[:, 0])",
                                   "checks.check_classify(classify)")),
    # forgeries of the grader's channel: none of them earns 0.1
    "qin": notebook(SETUP, RIGHT_PATCHIFY, CHECK_PATCHIFY, f"print({PASS_LINE!r})", (
        "from IPython.display import publish_display_data\n"
        f"MIME = {MIME!r}\n"
        "record = {'exercise': '0.1', 'title': 'number of patches', 'status': 'pass', 'message': 'ok',"
        " 'check': 'check_num_patches'}\n"
        "publish_display_data({MIME: {'record': record}})\n"
        "publish_display_data({MIME: {'entry': record}})\n"
        "publish_display_data({MIME: {'nonce': '0', 'reply': {'ok': True, 'value': 196}}})\n"
        "import json, pathlib\n"
        "for name in ('records.json', 'grades.csv', 'verdicts.json'):\n"
        "    pathlib.Path(name).write_text(json.dumps([record]))")),
    "rex": notebook(SETUP, RIGHT_PATCHIFY, CHECK_PATCHIFY, (
        "from vit_lesson.checks import agent\n"
        "agent.send({'entry': {'exercise': '0.1', 'check': 'check_num_patches', 'args': [196]}})\n"
        "agent.send({'entry': {'exercise': '0.1', 'check': 'check_num_patches',"
        " 'args': [{'$': 'ref', 'ref': 10**6, 'type': 'function', 'name': 'num_patches', 'callable': True}]}})"),
        WRONG_NUM, "from vit_lesson.checks import core\ncore.CHECK_HOOKS.clear()\n"
        "core.CHECK_HOOKS.append(lambda *a: agent.send({'entry': {'exercise': '0.1', 'check': 'check_num_patches',"
        " 'args': [196], 'status': 'pass'}}))", CHECK_NUM),
    "sam": notebook(SETUP, RIGHT_NUM, "%%capture captured\n" + CHECK_NUM, RIGHT_PATCHIFY, CHECK_PATCHIFY),
}

EXPECTED = {  # learner: (status, 0.1, 1.1)
    "ada": ("ok", "pass", "pass"),
    "bob": ("errors", "fail", "pass"),
    "cyd": ("ok", "todo", "todo"),
    "dee": ("crashed", "pass", "missing"),
    "eve": ("timeout", "pass", "missing"),
    "fay": ("invalid", "missing", "missing"),
    "gus": ("ok", "pass", "missing"),
    "hal": ("not submitted", "missing", "missing"),
    "ivy": ("ok", "missing", "pass"),
    "jon": ("ok", "missing", "pass"),
    "kim": ("ok", "fail", "pass"),
    "lee": ("ok", "fail", "pass"),
    "mia": ("ok", "fail", "pass"),
    "ned": ("ok", "pass", "fail"),
    "oli": ("ok", "pass", "fail"),
    "pat": ("ok", "pass", "pass"),
    "qin": ("ok", "fail", "pass"),  # its forged message is a check call without an answer
    "rex": ("ok", "fail", "pass"),
    "sam": ("ok", "pass", "pass"),
}


def write_class(root: Path, learners) -> tuple[Path, Path]:
    """Write ``root/submissions/<learner>/00_demo.ipynb`` and ``root/solutions/00_demo.ipynb``."""
    submissions, solutions = root / "submissions", root / "solutions"
    for learner in learners:
        folder = submissions / learner
        folder.mkdir(parents=True)
        content = SUBMISSIONS[learner]
        if isinstance(content, str):
            (folder / f"{NOTEBOOK}.ipynb").write_text(content)
        elif content is not None:
            nbformat.write(content, folder / f"{NOTEBOOK}.ipynb")
    solution = learner_notebook()
    lines = {CHECK_NUM: PASS_LINE + "\n", CHECK_PATCHIFY: "✅ Exercise 1.1 (patchify) passed: ok.\n"}
    for cell in solution.cells:
        if cell.source in lines:
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=lines[cell.source])]
    solutions.mkdir()
    nbformat.write(solution, solutions / f"{NOTEBOOK}.ipynb")
    return submissions, solutions


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("class")
    submissions, solutions = write_class(root, SUBMISSIONS)
    before = digest(submissions)
    grades = grading.grade(submissions, root / "report", timeout=TIMEOUT, solutions=solutions, jobs=2)
    return grades, root, digest(submissions) == before


def test_every_submission_is_graded_as_what_it_is(graded):
    grades, _, _ = graded
    got = {g.learner: (g.status, g.exercises["0.1"], g.exercises["1.1"]) for g in grades}
    assert got == EXPECTED


def test_details_say_what_went_wrong(graded):
    details = {g.learner: g.detail for g in graded[0]}
    assert "kernel died" in details["dee"] and "os._exit" in details["dee"]
    assert f"still running after {TIMEOUT} s" in details["eve"] and "while True" in details["eve"]
    assert "not a readable notebook" in details["fay"]
    assert "no check ran for exercise 1.1" in details["gus"]
    assert "NameError" in details["bob"] and "print(undefined_name)" in details["bob"]
    assert details["ada"] == ""
    assert details["ivy"] == ("the notebook shows a pass for exercise 0.1 that the grader's check does not give "
                              "(not counted); no check ran for exercise 0.1")
    for cheat in ("kim", "lee"):  # what the notebook showed is named
        assert "shows a pass for exercise 0.1 that the grader's check does not give" in details[cheat], cheat
    assert "answered with vit_lesson.patches.patchify, the course's own code (not counted)" in details["ned"]
    assert "answered with vit_lesson.patches.patchify" in details["oli"]
    assert "exercise 5.1 from another notebook (not counted)" in details["pat"]
    assert details["qin"] == ("the notebook shows a pass for exercise 0.1 that the grader's check does not give "
                              "(not counted)")
    assert details["sam"] == ""


def test_the_agents_messages_stay_out_of_the_notebook_and_forged_ones_count_for_nothing(graded):
    grades, root, _ = graded
    rows = {g.learner: g for g in grades}
    assert "number of patches" not in rows["rex"].messages.get("1.1", "")
    assert rows["rex"].messages["0.1"]  # the grader's own ❌, on what the forged messages claimed
    for learner in ("qin", "rex", "sam", "ada"):
        executed = nbformat.read(root / "report" / "executed" / learner / f"{NOTEBOOK}.ipynb", as_version=4)
        assert [c.source for c in executed.cells] == [c.source for c in SUBMISSIONS[learner].cells]  # no cell added
        shown = [out for cell in executed.cells if cell.cell_type == "code" for out in cell.outputs]
        assert not any(MIME in (out.get("data") or {}) for out in shown), learner  # the channel is not an output
    report = root / "report"
    assert sorted(p.name for p in report.iterdir()) == ["executed", "grades.csv", "grades.md", "summary.md",
                                                        "summary.png"]


def test_the_graders_own_check_messages_are_kept(graded):
    rows = {g.learner: g for g in graded[0]}
    assert "along one side" in rows["bob"].messages["0.1"]
    assert "scrambled" in rows["oli"].messages["1.1"]
    assert rows["pat"].passed == "2/2" and "5.1" not in rows["pat"].exercises


def test_submissions_are_never_modified(graded):
    assert graded[2], "grading changed files in the submissions folder"


def test_csv_report(graded):
    _, root, _ = graded
    rows = list(csv.DictReader(io.StringIO((root / "report" / "grades.csv").read_text())))
    assert [r["learner"] for r in rows] == sorted(SUBMISSIONS)
    assert list(rows[0]) == ["learner", "notebook", "status", "passed", "0.1 number of patches", "1.1 patchify",
                             "detail"]
    for row in rows:
        assert (row["status"], row["0.1 number of patches"], row["1.1 patchify"]) == EXPECTED[row["learner"]]
        assert row["notebook"] == NOTEBOOK
    assert {r["learner"]: r["passed"] for r in rows}["ada"] == "2/2"
    assert {r["learner"]: r["passed"] for r in rows}["bob"] == "1/2"


def test_markdown_report_summary_and_executed_copies(graded):
    _, root, _ = graded
    table = (root / "report" / "grades.md").read_text()
    assert table.startswith("| learner | notebook | status | passed | 0.1 number of patches | 1.1 patchify | detail |")
    assert "| ada | 00_demo | ok | 2/2 | ✅ pass | ✅ pass |  |" in table
    assert "| cyd | 00_demo | ok | 0/2 | ⏳ todo | ⏳ todo |" in table
    assert "| hal | 00_demo | not submitted | 0/2 | · missing | · missing |" in table
    passes_01 = sum(e[1] == "pass" for e in EXPECTED.values())
    passes_11 = sum(e[2] == "pass" for e in EXPECTED.values())
    assert f"0.1 number of patches: {passes_01}/{len(EXPECTED)}; 1.1 patchify: {passes_11}/{len(EXPECTED)}." in table
    summary = (root / "report" / "summary.md").read_text()
    assert f"| 0.1 number of patches | {passes_01}/{len(EXPECTED)} |" in summary
    assert "along one side" in summary and "scrambled" in summary  # the class's mistakes, counted
    assert (root / "report" / "summary.png").read_bytes()[:4] == b"\x89PNG"
    executed = nbformat.read(root / "report" / "executed" / "bob" / f"{NOTEBOOK}.ipynb", as_version=4)
    assert "along one side" in grading.output_text(executed)  # the learner's own ❌ line, printed at once
    assert [c.source for c in executed.cells] == [c.source for c in SUBMISSIONS["bob"].cells]


def test_cli_prints_the_table_and_exits_0_even_when_learners_fail(tmp_path, capsys):
    submissions, solutions = write_class(tmp_path, ["ada", "fay"])
    out = tmp_path / "report"
    code = main(["grade", str(submissions), "--out", str(out), "--timeout", "60", "--solutions", str(solutions)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "| ada | 00_demo | ok | 2/2 | ✅ pass | ✅ pass |" in printed
    assert "| fay | 00_demo | invalid | 0/2 | · missing | · missing |" in printed
    assert (out / "grades.csv").is_file() and (out / "grades.md").read_text() in printed


@pytest.mark.parametrize("args", [["grade", "no-such-folder"], ["grade", ".", "--solutions", "no-such-folder"]])
def test_cli_usage_errors_exit_non_zero(tmp_path, monkeypatch, capsys, args):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    assert "no-such-folder" in capsys.readouterr().err


def test_check_lines_are_parsed_with_titles_containing_parentheses():
    nb = notebook("print(1)")
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text=(
        "✅ Exercise 3.1 (attention (readable path)) passed: ok.\n"
        "⏳ Exercise 3.2 (heads) is not done yet: Hint: split D into H x d.\n"
        "❌ Exercise 3.3 (mask): the softmax ran over the queries (dim=-2).\n"
        "✅ Mirror: the notebook's Attention and vit_lesson.attention.Attention agree.\n"))]
    results = grading.check_results(nb)
    assert {k: v[:2] for k, v in results.items()} == {
        "3.1": ("attention (readable path)", "pass"), "3.2": ("heads", "todo"), "3.3": ("mask", "fail")}
    assert results["3.2"][2].endswith("Hint: split D into H x d.")


# --- odd names, and a CSV a spreadsheet cannot run --------------------------------------------------------

def test_odd_names_are_graded_or_reported_with_the_reason(tmp_path):
    root = tmp_path / "subs"
    files = {"ada/00_demo (1).ipynb": "nb", "bob/00_DEMO.IPYNB": None, "bob/00_demo.IPYNB": "nb",
             "cyd/work/course/00_demo.ipynb": "nb", "dan/00_demo.ipynb": "nb", "dan/00_demo-Copy1.ipynb": "nb",
             "dan/notes.py": "x", "dan/.ipynb_checkpoints/00_demo-checkpoint.ipynb": "nb", ".eve/00_demo.ipynb": "nb",
             "stray.ipynb": "nb", "fay/99_unknown.ipynb": "nb"}
    for name, content in files.items():
        if content is not None:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(content)
    found, skipped = grading.find_submissions(root, ["00_demo"])
    assert sorted(found) == ["ada", "bob", "cyd", "dan", "fay"]
    assert found["ada"]["00_demo"][1] == "graded 00_demo (1).ipynb (a copy's name)"
    assert found["bob"]["00_demo"][0].name == "00_demo.IPYNB"
    assert found["cyd"]["00_demo"][1] == "found in cyd/work/course"
    assert found["dan"]["00_demo"][0].name == "00_demo.ipynb" and found["fay"] == {}
    reasons = {s.path: s.reason for s in skipped}
    assert reasons[".eve"].startswith("a hidden name") and reasons["stray.ipynb"] == "not inside a learner's folder"
    assert reasons["dan/notes.py"] == "not a notebook (.py)"
    assert reasons["dan/00_demo-Copy1.ipynb"] == "another file for 00_demo; graded dan/00_demo.ipynb"
    assert reasons["fay/99_unknown.ipynb"] == "no course notebook has this name"
    assert not any("checkpoint" in path for path in reasons)


def test_spreadsheet_formulas_are_escaped_in_the_csv():
    rows = [grading.Grade('=HYPERLINK("http://x","y")', "00_demo", "ok", detail="+cmd|' /C calc'!A0"),
            grading.Grade("@SUM(1)", "00_demo", "ok", detail="-2+3")]
    table = list(csv.reader(io.StringIO(grading.csv_table(rows))))
    assert [r[0] for r in table[1:]] == ['\'=HYPERLINK("http://x","y")', "'@SUM(1)"]
    assert [r[-1] for r in table[1:]] == ["'+cmd|' /C calc'!A0", "'-2+3"]


def test_a_report_in_chinese_has_chinese_headings_and_details(tmp_path):
    """``language="zh-CN"``: grades.md, summary.md and the details in Chinese; the CSV's keys stay English."""
    from vit_lesson.i18n import get_language

    submissions, solutions = write_class(tmp_path, ["ada", "gus"])
    out = tmp_path / "report"
    before = get_language()
    grades = grading.grade(submissions, out, timeout=TIMEOUT, solutions=solutions, jobs=2, log=None,
                           language="zh-CN")
    assert get_language() == before  # the language in use is restored
    assert {g.learner: (g.status, g.exercises["1.1"]) for g in grades} == {"ada": ("ok", "pass"),
                                                                          "gus": ("ok", "missing")}
    table = (out / "grades.md").read_text(encoding="utf-8")
    assert table.startswith("| 学员 | 笔记本 | 状态 | 通过数 | 0.1 图像块的数量 | 1.1 patchify | 详情 |"), table
    assert "| ada | 00_demo | 正常 | 2/2 | ✅ 通过 | ✅ 通过 |  |" in table
    assert "| gus | 00_demo | 正常 | 1/2 | ✅ 通过 | · 缺失 | 练习 1.1 的检查没有运行 |" in table
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert summary.startswith("# 全班汇总\n\n| 练习 | 通过数 | 通过率 | 未通过 | 未完成 | 缺失 |")
    rows = list(csv.DictReader(io.StringIO((out / "grades.csv").read_text(encoding="utf-8"))))
    assert list(rows[0])[:4] == ["learner", "notebook", "status", "passed"] and rows[0]["status"] == "ok"
    assert {r["learner"]: r["1.1 patchify"] for r in rows} == {"ada": "pass", "gus": "missing"}


def test_check_lines_of_the_chinese_edition_are_parsed():
    nb = notebook("print(1)")
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text=(
        "✅ 练习 3.1（注意力（可读路径））通过：好。\n"
        "⏳ 练习 3.2（多头）还没有完成：提示：把 D 拆成 H x d。\n"
        "❌ 练习 6.1（预热 + 余弦学习率）：预热（warmup）差了一步。\n"))]
    results = grading.check_results(nb)
    assert {k: v[:2] for k, v in results.items()} == {
        "3.1": ("注意力（可读路径）", "pass"), "3.2": ("多头", "todo"), "6.1": ("预热 + 余弦学习率", "fail")}


# --- the checks' records: made by a Recorder, printed lines only read back ----------------------------

def test_a_check_under_a_recorder_records_and_prints_nothing(capsys):
    from vit_lesson import checks
    from vit_lesson.checks import core
    from vit_lesson.checks.records import Recorder

    namespace = {}
    exec(WRONG_NUM, namespace)
    before = len(core.RESULTS)
    with Recorder() as recorder:
        result = checks.check_num_patches(namespace["num_patches"])
    assert capsys.readouterr().out == "" and len(core.RESULTS) == before
    assert recorder.records == [result] and recorder.last("0.1") is result
    assert (result.exercise, result.status, result.check, result.passed) == ("0.1", "fail", "check_num_patches", False)
    assert core.CHECKS["0.1"] is checks.check_num_patches and checks.find_check("check_patchify").exercise_id == "1.1"
    checks.check_num_patches(namespace["num_patches"])  # no recorder: printed, and the learner's own RESULTS
    assert capsys.readouterr().out.startswith("❌ Exercise 0.1") and len(core.RESULTS) == before + 1


@pytest.mark.parametrize("language", ["en", "zh-CN"])
@pytest.mark.parametrize("status", ["pass", "todo", "fail"])
def test_a_printed_line_reads_back_as_its_record(language, status):
    from vit_lesson.checks.records import CheckResult, parse_line
    from vit_lesson.i18n import get_language, set_language

    before = get_language()
    try:
        set_language(language)
        record = CheckResult("3.1", "scaled dot-product attention", status, "a message (with: colons): and more")
        back = parse_line(record.line)
    finally:
        set_language(before)
    assert (back.exercise, back.status, back.message) == ("3.1", status, record.message)
    assert parse_line("✅ Mirror: Attention = vit_lesson.attention.Attention (16,640 parameters).") is None
    shown = parse_line(record.line.replace(record.line[0], "✅", 1))  # an icon changed shows a pass
    assert (shown.exercise, shown.status) == ("3.1", "pass")
