"""``make lab``: JupyterLab opens the MyST chapters (notebooks/*.md) as notebooks and runs them.

JupyterLab is started headless as ``make lab`` starts it (the ``lab`` extra: JupyterLab and
Jupytext), on a free local port with a random token, with its own runtime, config and
user-settings folders (so that a reader's settings do not change the outcome). Through the
server's REST API the test

1. finds JupyterLab's page and the default viewer that ``make lab`` installs for Markdown files
   (Jupytext's notebook view: tools/jupyterlab/overrides.json, installed into
   ``.venv/share/jupyter/lab/settings/overrides.d/``);
2. opens a chapter, ``notebooks/NAME.md``, *as a notebook* (Jupytext's contents manager) and finds
   its ``parameters`` cell;
3. starts a kernel for it (a session, as the browser does), executes that cell through the
   kernel's websocket, and reads back every parameter's value and the kernel's working folder:
   the defaults of the cell (as :mod:`sdlib.chapters.runner` reads them) and ``notebooks/``, where the book
   runs every chapter; ``sdlib`` imports in that kernel.

Without the lab extra the test is skipped with a message, except under CI (``CI=true``).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("*.md"))

pytestmark = pytest.mark.slow


def _need_lab() -> None:
    try:
        import jupyterlab  # noqa: F401
        import jupytext  # noqa: F401
    except ImportError as exc:
        msg = f"the lab extra is not installed ({exc}): make lab is not tested"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but " + msg)
        pytest.skip(msg)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Lab:
    def __init__(self, base: str, token: str) -> None:
        self.base, self.token = base, token

    def request(self, method: str, path: str, body: Any = None) -> Any:
        req = urllib.request.Request(self.base + path, method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"token {self.token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            raw = resp.read()
            return json.loads(raw) if raw and "json" in resp.headers.get("Content-Type", "") else raw


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    _need_lab()
    home = tmp_path_factory.mktemp("lab")
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(home / "runtime"), JUPYTER_CONFIG_DIR=str(home / "config"),
               JUPYTERLAB_SETTINGS_DIR=str(home / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(home / "ws"),
               OMP_NUM_THREADS="1")
    exe = Path(sys.executable).with_name("jupyter-lab")
    # What `make lab` runs (see the Makefile), headless on a free port.
    cmd = [str(exe) if exe.exists() else "jupyter-lab", "--no-browser", "--ServerApp.root_dir=.",
           "--ServerApp.default_url=/lab/tree/notebooks", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}",
           *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])]
    log = (home / "lab.log").open("w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = Lab(f"http://127.0.0.1:{port}", token)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                server.request("GET", "/api/status")
                break
            except (urllib.error.URLError, ConnectionError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"jupyter lab did not start:\n{(home / 'lab.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_make_lab_starts_this_server() -> None:
    recipe = (ROOT / "Makefile").read_text(encoding="utf8").split("\nlab:", 1)[1].split("\n\n", 1)[0]
    assert "jupyter lab" in recipe and "--ServerApp.default_url=/lab/tree/notebooks" in recipe


def test_lab_page_and_markdown_viewer(lab: Lab) -> None:
    page = lab.request("GET", "/lab")
    assert b"JupyterLab" in page
    settings = lab.request("GET", "/lab/api/settings/@jupyterlab/docmanager-extension:plugin")
    # The overrides change the setting's default (the schema), not the user's value.
    viewers = {**settings["schema"]["properties"]["defaultViewers"].get("default", {}),
               **settings["settings"].get("defaultViewers", {})}
    assert viewers.get("markdown") == "Jupytext Notebook", (
        f"Markdown files do not open as notebooks (defaultViewers={viewers}): make lab installs "
        "tools/jupyterlab/overrides.json into .venv/share/jupyter/lab/settings/overrides.d/")


async def _execute(lab: Lab, kernel_id: str, codes: list[str]) -> list[dict[str, Any]]:
    from tornado.websocket import websocket_connect

    url = lab.base.replace("http", "ws") + f"/api/kernels/{kernel_id}/channels?token={lab.token}"
    ws = await websocket_connect(url)
    session = uuid.uuid4().hex
    replies = []
    try:
        for code in codes:
            msg_id = uuid.uuid4().hex
            await ws.write_message(json.dumps({
                "header": {"msg_id": msg_id, "msg_type": "execute_request", "session": session, "username": "test",
                           "version": "5.3", "date": ""},
                "parent_header": {}, "metadata": {}, "channel": "shell",
                "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                            "allow_stdin": False, "stop_on_error": True},
            }))
            out: dict[str, Any] = {"stdout": "", "errors": []}
            idle = False
            while True:
                raw = await asyncio.wait_for(ws.read_message(), timeout=120)
                assert raw is not None, "the kernel's websocket closed"
                msg = json.loads(raw)
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind = msg["header"]["msg_type"]
                if kind == "stream" and msg["content"]["name"] == "stdout":
                    out["stdout"] += msg["content"]["text"]
                elif kind == "error":
                    out["errors"].append("\n".join(msg["content"]["traceback"]))
                elif kind == "execute_reply":
                    out["status"] = msg["content"]["status"]
                elif kind == "status" and msg["content"].get("execution_state") == "idle":
                    idle = True
                # the reply (shell channel) may come before the last output (iopub): the request is
                # done when both the reply and the kernel's "idle" for it have come
                if "status" in out and idle:
                    break
            replies.append(out)
    finally:
        ws.close()
    return replies


@pytest.mark.parametrize("chapter", CHAPTERS[:1], ids=lambda p: p.stem)
def test_chapter_opens_as_a_notebook_and_runs(lab: Lab, chapter: Path) -> None:
    from sdlib.chapters.runner import notebook_parameters

    rel = chapter.relative_to(ROOT).as_posix()
    model = lab.request("GET", f"/api/contents/{rel}?type=notebook&content=1")
    assert model["type"] == "notebook", model["type"]
    cells = model["content"]["cells"]
    params_cells = [c for c in cells if c["cell_type"] == "code" and "parameters" in c["metadata"].get("tags", [])]
    assert len(params_cells) == 1, "the chapter opened as a notebook has no single parameters cell"
    source = params_cells[0]["source"]
    source = "".join(source) if isinstance(source, list) else source

    session = lab.request("POST", "/api/sessions", {"path": rel, "name": chapter.name, "type": "notebook",
                                                    "kernel": {"name": "python3"}})
    try:
        defaults = {name: p.default for name, p in notebook_parameters(chapter).items()}
        names = sorted(defaults)
        probe = ("import json, os, sdlib\n"
                 f"print(json.dumps({{'cwd': os.getcwd(), 'values': {{n: globals()[n] for n in {names!r}}}}}))")
        first, second = asyncio.run(_execute(lab, session["kernel"]["id"], [source, probe]))
        assert first["status"] == "ok", first["errors"]
        assert second["status"] == "ok", second["errors"]
        seen = json.loads(second["stdout"].strip().splitlines()[-1])
        assert Path(seen["cwd"]).resolve() == chapter.parent.resolve()
        assert seen["values"] == json.loads(json.dumps(defaults))
    finally:
        lab.request("DELETE", f"/api/sessions/{session['id']}")
