"""Shared test helpers: where things are, and running a notebook in a kernel of this environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from vit_lesson.grading import output_text  # noqa: F401 - re-exported for the tests

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def run_notebook(nb, cwd: Path, timeout: int = 300):
    """Execute ``nb`` in place in a fresh kernel on *this* Python, working directory ``cwd``.

    Cells that raise do not stop the run (their error outputs stay in ``nb``); returns ``nb``.
    The notebook's ``kernelspec`` is ignored, so the kernel always has this environment's packages.
    """
    import ipykernel.kernelspec
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient

    class CurrentEnvironment(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):
            return self.kernel_spec_class(resource_dir=ipykernel.kernelspec.RESOURCES,
                                          **ipykernel.kernelspec.get_kernel_dict())

    manager = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=CurrentEnvironment())
    NotebookClient(nb, km=manager, timeout=timeout, allow_errors=True, startup_timeout=120,
                   resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


@pytest.fixture
def notebook_runner():
    """``notebook_runner(nb, cwd, timeout=300)``: see :func:`run_notebook`."""
    return run_notebook
