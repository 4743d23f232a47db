"""Every command shown in the README and in docs/*.md, run on the tiny demo data.

The commands are the lines of the ```bash blocks (a trailing ``\\`` joins lines, ``#`` starts a
comment) and the ```yaml blocks whose first line is ``# FILE: COMMAND`` (the block is written
to FILE, then COMMAND runs). They run in document order, README first, then docs/*.md by name,
in one sandbox folder that holds the names the docs use (``mvtec/carpet``, ``good/``,
``new-images/``, ``archive.txt``, ``part.png``, ...) made of the tiny demo data. What is
substituted, and why (the rule, stated once):

- ``ssimae`` (also ``.venv/bin/ssimae``, ``python -m ssimae``) runs in this process; ``train``
  and ``compare`` get the tiny options of ``tests.helpers.clicheck.TINY`` appended (the last
  value of an option wins), ``--budget-minutes M`` becomes 0.01 minutes, ``--device cuda``
  becomes cpu; ``compare`` drops ``fm`` unless the AlexNet weights are on disk (a download);
  ``demo`` trains one epoch of 16 patches per model on 160 px images.
- ``torchrun ... -m ssimae train ARGS`` runs ``ssimae train ARGS`` in one process (the
  launcher's own path is tested by tests/integration/test_cluster_ddp.py).
- ``--ray ADDRESS`` (a cluster) becomes ``--ray auto`` with one actor, on a local Ray instance
  of 2 CPUs that this process starts for the page (as tests/integration/test_cluster_ray.py
  does; ``auto`` would join any cluster running on the machine); absolute paths are taken
  inside the sandbox.
- ``python -m ssimae.runtime`` (also from ``runtime-venv/bin/python``) runs its ``main`` here;
  ``ssimae serve`` and ``python -m ssimae.serve`` start a server process on a free port
  (``--host 0.0.0.0`` becomes 127.0.0.1) that the ``curl`` lines after it, up to the next
  server or the end of the page, talk to (ports 8000, 8080 and the host ``line-pc`` become
  that server's), then it is stopped; ``curl`` itself runs as written.
- ``export VAR="$(...)"`` runs in bash and sets VAR here (the server and curl see it).
- Installs (``pip``, ``python -m build``, ``python -m venv``, ``runtime-venv/bin/pip``) are
  run by tests/integration/test_runtime_install.py and test_packaging.py: here each must be one
  of the steps those tests take (or name an extra pyproject.toml has).
- Benchmarks (``python benchmarks/X.py ...``) run with ``--help`` only (each measures for minutes).
- ``bash scripts/setup.sh && X`` runs X: the sandbox is the set-up environment; the test suite
  itself (``python -m pytest``) is not run from inside the test suite.
- A page may name a folder another page wrote (``--out runs/mine`` in two pages): a reader
  follows one page, so a ``train``/``compare``/``demo`` output folder written by an earlier
  page is removed before the command; within one page, a clash fails the test.

A command with ``--fail-on-defect`` may exit 1 (its documented "defective"); every other must
exit 0. A line with no rule fails the test, naming it.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.clicheck import TINY
from tests.helpers.paths import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```(\w*)[ \t]*\n(.*?)^```", re.S | re.M)
INSTALL_STEPS = {"python -m pip install build", "python -m build", "python -m build --wheel",
                 "python -m venv runtime-venv", "runtime-venv/bin/pip install -r requirements-runtime.txt",
                 "runtime-venv/bin/pip install --no-deps dist/ssimae-*.whl"}


@dataclass
class Shown:
    """One command of a page: where it is, its words, and for a YAML block the file it writes."""

    page: str
    line: int
    words: list[str]
    text: str
    file: tuple[str, str] | None = None  # (name, content) written before the command runs


def shown_commands(page: Path) -> list[Shown]:
    """The commands of ``page``'s bash blocks and ``# FILE: COMMAND`` YAML blocks, in order."""
    text = page.read_text(encoding="utf-8")
    found = []
    for m in BLOCK.finditer(text):
        lang, body = m.group(1), m.group(2)
        first = text.count("\n", 0, m.start(2)) + 1
        if lang == "yaml":
            head = re.match(r"#\s*(\S+):\s*(.+)\n", body)
            if head:
                found.append(Shown(page.name, first, shlex.split(head.group(2)), head.group(2),
                                   (head.group(1), body)))
            continue
        if lang not in ("bash", "sh"):
            continue
        joined = body.replace("\\\n", " ")
        for i, line in enumerate(joined.splitlines()):
            words = shlex.split(line, comments=True)
            if words:
                found.append(Shown(page.name, first + i, words, line.split(" #")[0].strip()))
    return found


def make_sandbox(root: Path, demo: Path) -> None:
    """The files and folders the docs' commands name, made of the tiny demo dataset ``demo``
    (MVTec layout): the dataset itself, a generic layout, new images, archives, one part."""
    shutil.copytree(demo, root / "mvtec" / "carpet")
    (root / "data" / "mvtec").mkdir(parents=True)
    os.symlink(root / "mvtec" / "carpet", root / "data" / "mvtec" / "carpet")
    test = sorted((demo / "test").rglob("*.png"))
    shutil.copytree(demo / "train" / "good", root / "good")
    for name in ("test", "new"):  # the generic layout: unique stems, masks by stem
        for img in test:
            dst = root / name / img.parent.name / f"{img.parent.name}_{img.name}"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(img, dst)
            mask = demo / "ground_truth" / img.parent.name / f"{img.stem}_mask.png"
            if mask.exists():
                (root / "masks").mkdir(exist_ok=True)
                shutil.copy(mask, root / "masks" / f"{img.parent.name}_{img.stem}_mask.png")
    shutil.copytree(demo / "test", root / "new-images")
    shutil.copytree(demo / "test" / "good", root / "new-good-images")
    for archive in (root / "archive", root / "mnt" / "archive"):
        archive.mkdir(parents=True)
        for img in test[:3]:
            shutil.copy(img, archive / f"{img.parent.name}_{img.name}")
    (root / "archive.txt").write_text("".join(f"archive/{p.name}\n" for p in sorted((root / "archive").glob("*"))))
    (root / "archive" / "2024-06.txt").write_text("".join(f"{p.name}\n" for p in sorted((root / "archive").glob("*.png"))))
    shutil.copy(test[0], root / "part.png")


def _program(words: list[str]) -> tuple[str, list[str]]:
    """(what runs, its arguments): env assignments dropped, the ssimae spellings made one."""
    while words and re.match(r"^[A-Z_]+=", words[0]):
        words = words[1:]
    head, rest = words[0], words[1:]
    if head in ("ssimae", ".venv/bin/ssimae"):
        return "ssimae", rest
    if head in ("python", ".venv/bin/python", "runtime-venv/bin/python") and rest[:1] == ["-m"]:
        return f"python -m {rest[1]}", rest[2:]
    if head in ("python", ".venv/bin/python") and rest and rest[0].startswith("benchmarks/"):
        return "benchmark", rest
    return head, rest


def _tiny_ssimae(args: list[str]) -> list[str]:
    """``ssimae ARGS`` with the substitutions of the module docstring."""
    args = [a.lstrip("/") if a.startswith("/") else a for a in args]
    if "--device" in args and args[args.index("--device") + 1].startswith("cuda"):
        args[args.index("--device") + 1] = "cpu"
    if "--budget-minutes" in args:
        args[args.index("--budget-minutes") + 1] = "0.01"
    if "--ray" in args:
        i = args.index("--ray")
        if i + 1 < len(args) and not args[i + 1].startswith("-"):
            args[i + 1] = "auto"
        args += ["--ray-actors", "1"]
    if "--models" in args:
        from ssimae.models.alexnet import hub_checkpoint_path

        i = args.index("--models")
        models = args[i + 1].split(",")
        if not hub_checkpoint_path().is_file():
            models = [m for m in models if m != "fm"]
        args[i + 1] = ",".join(models)
    if args and args[0] in ("train", "compare"):
        args = args + TINY
    return args


class Server:
    """A server process started from a shown command, on a free port of 127.0.0.1."""

    def __init__(self, argv: list[str], cwd: Path):
        argv = [("127.0.0.1" if a == "0.0.0.0" else a) for a in argv]
        if "--port" in argv:
            argv[argv.index("--port") + 1] = "0"
        else:
            argv += ["--port", "0"]
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        self.proc = subprocess.Popen([sys.executable, *argv], cwd=cwd, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if not m:
            self.stop()
            raise AssertionError(f"the server did not start: {line}{self.proc.stderr.read()[-2000:]}")
        self.port = m.group(1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def _curl(words: list[str], server: Server | None, cwd: Path) -> None:
    assert server is not None, "curl with no server started before it on this page"
    argv = [re.sub(r"//(127\.0\.0\.1|line-pc):(8000|8080)", f"//127.0.0.1:{server.port}", os.path.expandvars(w))
            for w in words]
    for _ in range(60):  # the server prints its address just before it listens
        proc = subprocess.run(argv + ["--noproxy", "*", "--fail-with-body"], cwd=cwd, capture_output=True, text=True,
                              timeout=120, env=dict(os.environ))
        if proc.returncode != 7:  # 7: could not connect (yet)
            break
        time.sleep(0.5)
    assert proc.returncode == 0, f"{' '.join(argv)}: {proc.returncode} {proc.stdout[-500:]} {proc.stderr[-500:]}"


def _install_step(shown: Shown) -> None:
    words = shown.words
    extra = re.match(r"^(?:\.|ssimae)\[([\w,]+)\]$", words[-1])
    if words[:2] == ["pip", "install"] and extra:
        extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
        missing = set(extra.group(1).split(",")) - set(extras)
        assert not missing, f"no extra {missing} in pyproject.toml"
        return
    assert shown.text in INSTALL_STEPS, f"an install step no test takes: {shown.text}"


def run_page(page: Path, sandbox: Path, main, runtime_main, written: dict[Path, str]) -> None:
    """Run every command of ``page`` in ``sandbox`` (the working directory); AssertionError
    naming the page, the line and the command at the first that fails or has no rule.
    ``written``: the training output folders each page made (kept across pages)."""
    server: Server | None = None
    exported = set(os.environ)
    ray_started = False
    try:
        for shown in shown_commands(page):
            where = f"{shown.page}:{shown.line}: {shown.text}"
            try:
                _clear_other_pages_output(shown, sandbox, written)
                ray_started = ray_started or ("--ray" in shown.words and _start_local_ray())
                server = _run_one(shown, sandbox, main, runtime_main, server)
            except AssertionError as e:
                raise AssertionError(f"{where}: {e}") from None
    finally:
        if server is not None:
            server.stop()
        for name in set(os.environ) - exported:
            del os.environ[name]
        if ray_started:
            import ray

            ray.shutdown()


def _start_local_ray() -> bool:
    """A local Ray instance for this process (``--ray auto`` reuses it); True if started here."""
    import ray

    if ray.is_initialized():
        return False
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 2**20, log_to_driver=False,
             logging_level="warning")
    return True


def _clear_other_pages_output(shown: Shown, sandbox: Path, written: dict[Path, str]) -> None:
    words = shown.words
    if not any(w in ("train", "compare", "demo") for w in words) or "--resume" in words or "--out" not in words:
        return
    out = (sandbox / words[words.index("--out") + 1].lstrip("/")).resolve()
    if written.get(out, shown.page) != shown.page and out.exists():
        shutil.rmtree(out)
    written[out] = shown.page


def _run_one(shown: Shown, sandbox: Path, main, runtime_main, server):
    """One command; returns the server that later curl lines talk to."""
    if shown.file is not None:
        (sandbox / shown.file[0]).write_text(shown.file[1], encoding="utf-8")
    words = shown.words
    if "&&" in words:  # bash scripts/setup.sh && X: the sandbox is set up; X runs
        assert words[:2] == ["bash", "scripts/setup.sh"], "a && chain other than the set-up"
        words = words[words.index("&&") + 1:]
    prog, args = _program(words)
    if prog == "torchrun":
        i = args.index("-m")
        assert args[i + 1] == "ssimae", "torchrun of something else than ssimae"
        prog, args = "ssimae", args[i + 2:]
    if prog == "python -m pytest":
        return server
    if prog in ("ssimae", "python -m ssimae", "python -m ssimae.cli") and args[:1] == ["serve"]:
        prog, args = "python -m ssimae.serve", args[1:]
    if prog in ("ssimae", "python -m ssimae", "python -m ssimae.cli"):
        status = main(_tiny_ssimae(args))
        ok = (0, 1) if "--fail-on-defect" in args else (0,)
        assert status in ok, f"exit status {status}"
    elif prog == "python -m ssimae.runtime":
        assert runtime_main(_tiny_ssimae(args)) == 0
    elif prog == "python -m ssimae.serve":
        if server is not None:
            server.stop()
        server = Server(["-m", "ssimae.serve", *_tiny_ssimae(args)], sandbox)
    elif prog == "curl":
        _curl(words, server, sandbox)
    elif prog == "export":
        name, _, value = args[0].partition("=")
        out = subprocess.run(["bash", "-c", f"export {args[0]!s}; printf %s \"${name}\""], capture_output=True,
                             text=True, check=True).stdout if "$(" in value else value
        os.environ[name] = out
    elif prog == "benchmark":
        proc = subprocess.run([sys.executable, args[0], "--help"], cwd=ROOT, capture_output=True, text=True,
                              timeout=300, env={**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"})
        assert proc.returncode == 0, proc.stderr[-1000:]
    elif prog in ("pip", "python -m pip", "python -m build", "python -m venv", "runtime-venv/bin/pip"):
        _install_step(shown)
    else:
        raise AssertionError(f"no rule to run {prog!r} (add one to tests/helpers/doc_commands.py)")
    return server
