"""Fast start: ``ssimae --help``, ``--version``, every subcommand's ``--help`` and the one-line
errors found while parsing and checking options import no torch (importing torch is most of
the seconds a command took before its first line). Checked as an import, not as a timing:
each command runs in a fresh interpreter that reports whether ``torch`` was imported. Where
torch is missing, a command that needs it says so in one line that points to the runtime."""
import json
import subprocess
import sys

import pytest

from tests.helpers.paths import SRC

# runs ssimae's main(argv) and prints {"status", "torch"} as the last line of stdout; with
# "block": importing torch fails, as on a machine without it
PROBE = """
import json, sys
if {block}:
    class NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ModuleNotFoundError("No module named 'torch'", name="torch")
    sys.meta_path.insert(0, NoTorch())
from ssimae.cli.main import main
try:
    status = main({argv!r})
except SystemExit as e:
    status = e.code
print(json.dumps({{"status": status, "torch": "torch" in sys.modules}}))
"""


def probe(argv, block=False):
    """(exit status, whether torch was imported, stderr) of ``ssimae ARGV`` in a fresh process."""
    proc = subprocess.run([sys.executable, "-c", PROBE.format(argv=list(map(str, argv)), block=block)],
                          capture_output=True, text=True, timeout=120, env={"PYTHONPATH": str(SRC), "PATH": ""})
    assert proc.stdout.strip(), proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["status"], result["torch"], proc.stderr


def subcommands() -> list[str]:
    from ssimae.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return list(sub.choices)


def test_importing_the_command_line_imports_no_torch():
    proc = subprocess.run([sys.executable, "-c", "import sys, ssimae.cli.main; print('torch' in sys.modules)"],
                          capture_output=True, text=True, timeout=120, env={"PYTHONPATH": str(SRC), "PATH": ""})
    assert proc.stdout.strip() == "False", proc.stderr


@pytest.mark.parametrize("argv", [["--help"], ["--version"]] + [[c, "--help"] for c in subcommands()],
                         ids=" ".join)
def test_help_and_version_import_no_torch(argv):
    status, torch_imported, err = probe(argv)
    assert status == 0, err
    assert not torch_imported


@pytest.mark.parametrize("argv, needle", [
    (["train", "--model", "nope", "--out", "x"], "--model"),
    (["train", "--out", "x", "--epochs", "1"], "give --data"),
    (["predict", "RUN", "a.png", "--out", "x", "--engine", "tf"], "--engine"),
    (["train", "--data", "d", "--out", "x", "--resize", "0"], "--resize"),
])
def test_errors_found_before_any_work_import_no_torch(argv, needle):
    status, torch_imported, err = probe(argv)
    assert status == 2 and needle in err, err
    assert not torch_imported


def test_a_command_that_needs_torch_says_so_in_one_line_where_it_is_missing(demo_root, tmp_path):
    status, torch_imported, err = probe(["train", "--data", demo_root, "--out", tmp_path / "run"], block=True)
    assert status == 2 and not torch_imported
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ssimae: error:") and "python -m ssimae.runtime" in lines[0], err
    status, _, err = probe(["--help"], block=True)  # the help itself works there
    assert status == 0, err
