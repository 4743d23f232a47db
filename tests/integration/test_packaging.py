"""The package a user installs: the wheel builds, carries its license, type marker and extras,
and installed into a fresh virtual environment gives a working ``ssimae`` command.

The fresh environment gets the wheel with ``--no-deps`` and borrows the dependencies
(torch, numpy, ...) of the environment running the tests through a path file, so the test
needs no download and never pulls a multi-GB CUDA build of torch.
"""
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(cmd, **kw):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, timeout=300, **kw)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The wheel of this source tree, built with ``python -m build`` (from a copy of the tree)."""
    pytest.importorskip("build", reason="building the wheel needs the build package (in the [test] extra)")
    pytest.importorskip("setuptools", reason="building without isolation needs setuptools (in the [test] extra)")
    tree = tmp_path_factory.mktemp("tree")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, tree / name)
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    dist = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", dist, tree])
    (whl,) = dist.glob("ssimae-*.whl")
    return whl


def test_wheel_carries_license_type_marker_and_extras(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "ssimae/py.typed" in names and "ssimae/runtime.py" in names and "ssimae/serve/app.py" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "License-Expression: MIT" in meta
    for extra in ("onnx", "serve", "test"):
        assert f"Provides-Extra: {extra}" in meta
    assert "Requires-Dist: onnxruntime>=1.17; extra == \"onnx\"" in meta


def test_wheel_installs_into_a_fresh_venv(wheel, tmp_path):
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    py = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index", "-q", wheel])
    purelib = Path(run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip())
    # borrow the dependencies of this environment (path entries only: its .pth files, an
    # editable ssimae among them, are not processed)
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (purelib / "borrowed_deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    where = run([py, "-c", "import ssimae; print(ssimae.__file__)"]).strip()
    assert Path(where).is_relative_to(venv), where
    exe = venv / ("Scripts/ssimae.exe" if os.name == "nt" else "bin/ssimae")
    out = run([exe, "--help"])
    assert "export" in out and "predict" in out and "train" in out
    run([exe, "make-demo-data", tmp_path / "demo"])
    assert (tmp_path / "demo" / "train" / "good").is_dir() and any((tmp_path / "demo" / "test").rglob("*.png"))
