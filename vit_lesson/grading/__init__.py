"""Teacher grading: run every learner's notebooks in a sandbox and tabulate which exercises pass.

Hand-in layout, one folder per learner, notebooks under their course names::

    submissions/
        ada/01_patches.ipynb
        ada/03_attention.ipynb
        grace/01_patches.ipynb

``python -m vit_lesson grade submissions --out report`` runs each notebook headless, each in its
own sandbox (bubblewrap namespaces where available, else a weaker process sandbox; both with caps
on CPU time, memory, file size, output and processes, and nothing left alive afterwards), from a
private copy of the notebook in a scratch folder that is the only place it may write; the other
submissions, the solutions and the report are hidden from it. It writes

- ``report/grades.csv`` and ``report/grades.md``: one row per learner x notebook, a ``status``
  column, a ``passed`` count and one column per exercise (``pass`` / ``fail`` / ``todo`` /
  ``missing``), and a ``detail`` that names what went wrong or looked wrong;
- ``report/summary.md`` and ``report/summary.png``: the pass rate per exercise and the most
  frequent ❌ messages per exercise (the mistakes the class made);
- ``report/executed/<learner>/<notebook>.ipynb``: the executed copies, to read what went wrong.

**Verdicts are the grader's own.** The check cells still run in the learner's kernel and print
their ✅ / ⏳ / ❌ lines there (the executed copy shows them), but nothing printed, recorded or
written in that kernel counts. The agent there sends what each check was given; the grader runs
the same check in its own process, inside a recorder it owns, and counts that record only.

The modules, in the order a notebook goes through them:

- :mod:`.submissions`: finding the hand-ins, odd names included;
- :mod:`.sandbox` (with :mod:`.cgroup` and the launcher ``_launch.py``): where a kernel runs;
- :mod:`.kernel`: the kernel manager and the nbclient client (output cap, the agent's messages);
- :mod:`.session`: running one notebook, cell by cell, and its checks after each cell;
- :mod:`.verdicts`: the grader's checks on the learner's answers, and what a notebook shows;
- :mod:`.grades`: one notebook's :class:`Grade` row; :mod:`.batch`: a whole class;
- :mod:`.report`: CSV, Markdown and the summary figure; :mod:`.cli`: ``python -m vit_lesson grade``.

Which exercises a notebook has comes from the solution notebook of the same name
(``--solutions``, default ``notebooks/``): the exercise checks its code calls; without one, the
exercises numbered like the notebook. Checks of other notebooks' exercises do not count. A
notebook that kills its kernel, runs out of time or memory, is not a notebook, or raises in a
cell is reported in ``status`` and never stops the grading of the others. Submissions are only
read, never modified.
"""

from __future__ import annotations

from .batch import grade
from .cli import add_cli
from .grades import INVALID, MISSING, NOT_SUBMITTED, Grade, grade_notebook
from .kernel import MAX_OUTPUT, kernel_manager
from .report import class_summary, csv_table, markdown_table, summary_figure, summary_table, write_report
from .session import CRASHED, ERRORS, OK, TIMEOUT, Run, execute_notebook
from .submissions import Skipped, find_submissions
from .verdicts import Verdict, check_results, expected_exercises, output_text, run_check

__all__ = ["Run", "Grade", "Skipped", "Verdict", "execute_notebook", "kernel_manager", "check_results",
           "expected_exercises", "output_text", "run_check", "grade", "grade_notebook", "find_submissions",
           "markdown_table", "csv_table", "summary_table", "class_summary", "summary_figure", "write_report",
           "add_cli", "MISSING", "NOT_SUBMITTED", "INVALID", "OK", "ERRORS", "CRASHED", "TIMEOUT", "MAX_OUTPUT"]
