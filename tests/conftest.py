"""Shared test helpers: where things are, the text a notebook printed, and the benchmark scripts."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from vit_lesson.grading import output_text  # noqa: F401 - re-exported for the tests

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: one torch thread is fastest and deterministic (``pytestmark = pytest.mark.usefixtures``)."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_report_header(config):
    """Say which CPU kernels and threads this run used (``make test-portable`` changes them)."""
    import os

    import torch
    return (f"torch {torch.__version__}: CPU kernels {torch.backends.cpu.get_cpu_capability()}, "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")


def load_benchmark(name: str):
    """``benchmarks/<name>.py`` as a module (the scripts are not a package), for smoke tests."""
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
