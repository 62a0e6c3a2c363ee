"""README command 1, `make lab`: JupyterLab starts on notebooks/, serves the lessons, runs the course.

The test runs the Makefile's `lab` target on a free port with a token and no browser, then talks to
the server the way JupyterLab's page does: REST for status, files and kernels, a websocket to run
code in a kernel. Everything is shut down (the whole process group) at the end.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
from conftest import ROOT

import vit_lesson

websocket = pytest.importorskip("websocket", reason="websocket-client is needed to talk to a kernel")


def environment_with_jupyter() -> Path:
    """The environment `make lab` would use: the project's .venv, else (conda) the running one."""
    for prefix in (ROOT / ".venv", Path(sys.prefix)):
        if (prefix / "bin" / "jupyter").exists():
            return prefix
    pytest.skip(f"no jupyter in {ROOT / '.venv'} or {sys.prefix}: run `make setup` (or install '.[lab]') first")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lab_command(venv: Path, port: int, token: str) -> list[str]:
    lab_args = f"--no-browser --ServerApp.token={token} --ServerApp.open_browser=False --ServerApp.ip=127.0.0.1"
    if os.geteuid() == 0:  # containers and CI often run as root, which Jupyter refuses without this flag
        lab_args += " --allow-root"
    variables = [f"PORT={port}", f"LAB_ARGS={lab_args}"]
    if venv != ROOT / ".venv":
        variables.append(f"VENV={venv}")
    stamp = (".venv" if venv == ROOT / ".venv" else str(venv)) + "/.installed"
    if shutil.which("make") is None:
        return [str(venv / "bin" / "jupyter"), "lab", "--notebook-dir=notebooks", f"--port={port}", *lab_args.split()]
    # `make test` ran `setup` just before this test, so the stamp is fresh and `make lab` installs nothing.
    # Where pyproject.toml changed since the last install (a developer's checkout), `-o STAMP` keeps make
    # from reinstalling (which needs the network) and runs the same `lab` recipe.
    up_to_date = subprocess.run(["make", "-q", *variables[2:], stamp], cwd=ROOT, capture_output=True).returncode == 0
    return ["make", "--no-print-directory", *([] if up_to_date else ["-o", stamp]), "lab", *variables]


class Lab:
    def __init__(self, port: int, token: str):
        self.base, self.token = f"http://127.0.0.1:{port}", token

    def request(self, method: str, path: str, body=None, timeout: float = 10):
        request = urllib.request.Request(f"{self.base}{path}", method=method,
                                         data=None if body is None else json.dumps(body).encode(),
                                         headers={"Authorization": f"token {self.token}",
                                                  "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read().decode()
            is_json = "json" in response.headers.get("Content-Type", "") and text
            return response.status, (json.loads(text) if is_json else text)


@pytest.fixture
def lab(tmp_path):
    venv, port, token = environment_with_jupyter(), free_port(), secrets.token_hex(16)
    log = (tmp_path / "lab.log").open("w")
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "BROWSER": "true"}
    process = subprocess.Popen(lab_command(venv, port, token), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                               env=env, start_new_session=True)
    server = Lab(port, token)
    try:
        deadline = time.monotonic() + 45
        while True:
            if process.poll() is not None:
                tail = (tmp_path / "lab.log").read_text()[-3000:]
                pytest.fail(f"`make lab` exited with {process.returncode}:\n{tail}")
            try:
                if server.request("GET", "/api/status", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not answer within 45 s:\n{(tmp_path / 'lab.log').read_text()[-3000:]}")
            time.sleep(0.25)
        yield server
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(timeout=5)
        log.close()


def execute(lab: Lab, kernel_id: str, code: str, timeout: float = 30) -> str:
    """Run ``code`` in a kernel over the websocket JupyterLab uses; return what it printed."""
    ws = websocket.create_connection(f"ws://127.0.0.1:{lab.base.rsplit(':', 1)[1]}/api/kernels/{kernel_id}/channels"
                                     f"?token={lab.token}", timeout=timeout)
    try:
        msg_id, session = uuid.uuid4().hex, uuid.uuid4().hex
        ws.send(json.dumps({
            "header": {"msg_id": msg_id, "session": session, "username": "test", "msg_type": "execute_request",
                       "version": "5.3", "date": datetime.now(timezone.utc).isoformat()},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True},
        }))
        printed, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = json.loads(ws.recv())
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = message["msg_type"]
            if kind == "stream":
                printed.append(message["content"]["text"])
            elif kind == "error":
                raise AssertionError(f"the kernel raised {message['content']['ename']}: {message['content']['evalue']}")
            elif kind == "status" and message["content"]["execution_state"] == "idle":
                return "".join(printed)
        raise AssertionError(f"no answer from the kernel within {timeout} s")
    finally:
        ws.close()


def test_make_lab_serves_the_notebooks_and_runs_the_course(lab):
    status, page = lab.request("GET", "/lab")
    assert status == 200 and "jupyter-config-data" in page, "the JupyterLab application page is not served"

    _, listing = lab.request("GET", "/api/contents")
    names = {item["name"] for item in listing["content"]}
    assert "01_patches.ipynb" in names, f"notebooks/ is not the root: {sorted(names)}"
    _, notebook = lab.request("GET", "/api/contents/01_patches.ipynb")
    assert notebook["type"] == "notebook" and notebook["content"]["cells"]

    _, kernel = lab.request("POST", "/api/kernels", {"name": "python3"}, timeout=30)
    try:
        printed = execute(lab, kernel["id"], "import vit_lesson; print(vit_lesson.__version__)")
        assert printed == f"{vit_lesson.__version__}\n"
    finally:
        lab.request("DELETE", f"/api/kernels/{kernel['id']}", timeout=30)
