"""The torch-free install of docs/deploy.md, done exactly as written: the wheel built with
``python -m build --wheel``, a fresh virtual environment (no system site-packages, so no
torch), ``pip install -r requirements-runtime.txt`` and ``pip install --no-deps`` of the
wheel, from PyPI. There the runtime and the torch-free server score an export as
``ssimae predict --engine onnx`` does here, ``ssimae --help`` works and a command that needs
torch says so in one line. Skipped (saying why) where PyPI cannot be reached."""
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ssimae.cli.main import main
from tests.helpers.paths import ROOT

DEPLOY = ROOT / "docs" / "deploy.md"
# the install, as docs/deploy.md shows it ({venv}: the environment's folder)
STEPS = ["python -m build --wheel",
         "python -m venv runtime-venv",
         "runtime-venv/bin/pip install -r requirements-runtime.txt",
         "runtime-venv/bin/pip install --no-deps dist/ssimae-*.whl"]


def run(cmd, cwd=None, ok=True, timeout=900):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)
    if ok:
        assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_the_docs_show_these_steps():
    text = DEPLOY.read_text(encoding="utf-8")
    for step in STEPS:
        assert step in text, step
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "pip install -r requirements-runtime.txt" in readme and "pip install --no-deps dist/ssimae-*.whl" in readme


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory):
    """A checkout's copy with the wheel built and runtime-venv installed, by the steps of the docs."""
    try:
        urllib.request.urlopen("https://pypi.org/simple/pip/", timeout=10).close()
    except OSError as e:
        pytest.skip(f"PyPI cannot be reached ({e}): the install from PyPI is not tried")
    pytest.importorskip("build", reason="building the wheel needs the build package (in the [test] extra)")
    tree = tmp_path_factory.mktemp("checkout")
    for name in ("pyproject.toml", "README.md", "LICENSE", "requirements-runtime.txt"):
        shutil.copy(ROOT / name, tree / name)
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    python = Path(sys.executable)
    base = Path(getattr(sys, "_base_executable", sys.executable))  # python -m venv from the base interpreter
    for step in STEPS:
        words = step.split()
        if words[0] == "python":
            words[0] = python if "build" in words else base
        if "dist/ssimae-*.whl" in words:
            (whl,) = (tree / "dist").glob("ssimae-*.whl")
            words[words.index("dist/ssimae-*.whl")] = whl
        run(words, cwd=tree)
    return tree / "runtime-venv"


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    pytest.importorskip("onnx", reason="the export needs onnx (in the [test] extra)")
    out = tmp_path_factory.mktemp("export") / "export"
    assert main(["export", str(trained_run), "--out", str(out)]) == 0
    return out


def post(url: str, body: bytes, tries: int = 60) -> dict:
    """The JSON answer to a POST on this machine (no proxy), tried again while the server
    starts listening (it prints its address just before)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    for i in range(tries):
        try:
            with opener.open(urllib.request.Request(url, data=body, method="POST"), timeout=120) as answer:
                return json.load(answer)
        except urllib.error.URLError:
            if i == tries - 1:
                raise
            time.sleep(0.5)


def test_runtime_and_server_work_in_the_torch_free_install(runtime_venv, exported, demo_root, tmp_path, capsys):
    py, exe = runtime_venv / "bin" / "python", runtime_venv / "bin" / "ssimae"
    assert run([py, "-c", "import torch"], ok=False).returncode != 0  # no torch there
    images = sorted((demo_root / "test").rglob("*.png"))[:3]
    # the reference: ssimae predict --engine onnx here
    ref_dir = tmp_path / "ref"
    assert main(["predict", "--engine", "onnx", str(exported), *map(str, images), "--out", str(ref_dir), "--quiet"]) == 0
    reference = [json.loads(line) for line in (ref_dir / "predictions.jsonl").read_text().splitlines()]

    out = tmp_path / "runtime"
    run([py, "-m", "ssimae.runtime", exported, *images, "--out", out, "--quiet"])
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [r["path"] for r in rows] == [r["path"] for r in reference]
    for r, ref in zip(rows, reference):  # one onnxruntime, two processes: the same numbers
        assert r["score"] == pytest.approx(ref["score"], rel=1e-6) and r["defective"] == ref["defective"]
        assert r["defect_area"] == ref["defect_area"]

    assert "predict" in run([exe, "--help"]).stdout
    lines = run([exe, "predict", "--engine", "onnx", exported, images[0]]).stdout.splitlines()
    assert json.loads(lines[0])["score"] == pytest.approx(reference[0]["score"], rel=1e-6)
    needs = run([exe, "train", "--data", demo_root, "--out", tmp_path / "run"], ok=False)
    assert needs.returncode == 2 and "python -m ssimae.runtime" in needs.stderr
    assert needs.stderr.strip().count("\n") == 0, needs.stderr

    server = subprocess.Popen([str(py), "-m", "ssimae.serve", str(exported), "--port", "0"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        first = server.stdout.readline()
        port = re.search(r"http://127\.0\.0\.1:(\d+)/", first)
        assert port, first + server.stderr.read() if server.poll() is not None else first
        served = post(f"http://127.0.0.1:{port.group(1)}/v1/predict", images[0].read_bytes())
        assert served["score"] == pytest.approx(reference[0]["score"], rel=1e-6)
        assert served["defective"] == reference[0]["defective"]
    finally:
        server.terminate()
        server.wait(timeout=30)
