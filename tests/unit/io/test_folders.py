"""The run lock and the atomic writer's temporary files: only ssimae's own temporaries of dead
writers are removed, and a lock is held only by a live ssimae process (pid and start time)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from ssimae.errors import SsimaeError
from ssimae.io.files import TMP_PREFIX, atomic_write_text, temporary_path
from ssimae.io.folders import LOCK_NAME, RunLock
from ssimae.io.processes import process_tag, start_time, tag_alive


@pytest.fixture
def dead_tag():
    """The process tag of a process that has exited."""
    proc = subprocess.run([sys.executable, "-c", "from ssimae.io.processes import process_tag; print(process_tag())"],
                          capture_output=True, text=True, check=True)
    return proc.stdout.strip()


@pytest.fixture
def sleeper():
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


def test_process_tag_names_pid_and_start_time(sleeper, dead_tag):
    pid, start = process_tag(sleeper.pid).split(":")
    assert int(pid) == sleeper.pid and start == start_time(sleeper.pid) and start.isdigit()
    assert tag_alive(process_tag(sleeper.pid)) and tag_alive(process_tag())
    assert not tag_alive(dead_tag)
    assert not tag_alive(f"{sleeper.pid}:{int(start) + 1}")  # the pid now belongs to another process
    assert not tag_alive("") and not tag_alive("x") and not tag_alive("-1")


def test_out_user_files_named_like_temporaries_are_kept(tmp_path, dead_tag):
    """Cause 6: any ``.NAME.tmpDIGITS`` under the folder was deleted when the number was not a
    live pid. Now only ``.ssimae-tmp-PID:START-NAME`` files of dead writers go."""
    out = tmp_path / "o"
    (out / "sub").mkdir(parents=True)
    user = [out / "sub" / ".draft.md.tmp1", out / "sub" / ".notes.txt.tmp99999999", out / ".a.png.tmp4194999",
            out / f"{TMP_PREFIX}notes.txt", out / f"{TMP_PREFIX}99999999-x"]  # no PID:START tag
    for f in user:
        f.write_text("mine")
    stale = out / "sub" / f"{TMP_PREFIX}{dead_tag}-heat.png"
    stale.write_text("half")
    live = temporary_path(out / "being_written.png")  # this process: alive
    live.write_text("half")
    with RunLock(out, "ssimae predict"):
        pass
    assert all(f.read_text() == "mine" for f in user)
    assert not stale.exists() and live.exists()


def test_atomic_writer_leaves_no_temporary(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "x")
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    assert temporary_path(tmp_path / "a.txt").name == f"{TMP_PREFIX}{process_tag()}-a.txt"


def test_lock_of_a_pid_now_another_process_is_taken_over(tmp_path, sleeper):
    """Cause 19: a lock whose pid now belongs to a process that is not its writer (pid 1; a
    live pid with another start time) was never taken over and was called "another ssimae
    process"."""
    out = tmp_path / "o"
    out.mkdir()
    start = start_time(sleeper.pid)
    for text in ("1 ssimae predict\n", f"{sleeper.pid} ssimae predict\n", f"{sleeper.pid}:{int(start) + 7} x\n"):
        (out / LOCK_NAME).write_text(text)
        with RunLock(out, "ssimae predict"):
            assert (out / LOCK_NAME).read_text() == f"{process_tag()} ssimae predict\n"
        assert not (out / LOCK_NAME).exists()
    # the writer itself, alive: refused, naming it
    (out / LOCK_NAME).write_text(f"{process_tag(sleeper.pid)} ssimae train\n")
    with pytest.raises(SsimaeError, match=f"another ssimae process \\(pid {sleeper.pid}, ssimae train\\)"):
        with RunLock(out, "ssimae predict"):
            pass
