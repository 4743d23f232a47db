"""Archive scoring on Ray (#22 part 2): ``ssimae predict ... --ray`` writes the same files as
single-process ``predict`` (every verdict row, score, mask, heat map, overlay, thumbnail),
survives a killed worker, and a rerun after an interruption scores only what was not done.

One local Ray instance (2 CPUs) serves the whole module: Ray takes ~10 s to start.
"""
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import shutil
import torch
from PIL import Image
from tests.helpers.clicheck import one_error_line

from ssimae.cli.main import main
from ssimae.data.datasets import walk_images
from ssimae.io.files import TMP_PREFIX

ray = pytest.importorskip("ray")

from ssimae.cluster.ray_scoring import (JOB_NAME, JOURNAL_NAME, STATE_DIR, check_reachable,  # noqa: E402
                                        predict_on_ray)


# Ray's outputs are compared with predict's byte for byte, and that is exact by design, not a
# tolerance of 0: an actor scores predict's chunks of IMAGES_PER_BATCH consecutive images (the
# same patches in the same network batches), with one torch thread as the reference below, in a
# worker process of this machine that inherits this environment (the same kernels, including
# under .ci/run's ONEDNN_MAX_CPU_ISA / ATEN_CPU_CAPABILITY): the same sums in the same order.
pytestmark = pytest.mark.kernels  # float comparisons across kernels: tests/helpers/floats.py

@pytest.fixture(scope="module")
def ray_instance():
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 2**20, log_to_driver=False,
             logging_level="warning")
    yield
    ray.shutdown()


def dead_tag():
    """The process tag (pid:start) of a process that has exited."""
    return subprocess.run([sys.executable, "-c", "from ssimae.io.processes import process_tag; print(process_tag())"],
                          capture_output=True, text=True, check=True).stdout.strip()


def quiet(*_):
    pass


def image(path, seed, size=130, suffix=".png"):
    """A random gray image file (BMP: the same size in bytes for any pixels)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)).save(path)
    return path


def rows(out):
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]


def snapshot(folder, skip=(STATE_DIR,)):
    """{relative path: bytes} of every file under ``folder`` (outside ``skip``)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.relative_to(folder).parts[0] not in skip}


def one_thread_predict(args):
    """``ssimae predict`` in this process with one torch thread, as each actor scores (torch's
    CPU kernels round differently at other thread counts)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["predict", *args, "--quiet"]) == 0
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def reference(trained_run, demo_root, tmp_path_factory):
    """Single-process predict of every image under the demo dataset (12 images: 2 chunks)."""
    out = tmp_path_factory.mktemp("single") / "pred"
    one_thread_predict([str(trained_run), str(demo_root), "--out", str(out)])
    return snapshot(out)


def test_ray_equals_predict_with_a_worker_killed(ray_instance, trained_run, demo_root, reference, tmp_path):
    """Two actors; one dies (os._exit) after writing its first chunk's files: Ray restarts it,
    the chunk is scored again, and every output file equals single-process predict's."""
    marker = str(tmp_path / "killed")

    def kill_once(count):
        import os

        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
        os._exit(1)

    out = tmp_path / "ray"
    stats = predict_on_ray(trained_run, [demo_root], out, actors=2, threads=1, progress=False,
                           after_batch=kill_once, log=lambda *_: None)
    assert os.path.exists(marker)  # a worker was killed
    assert stats == {"images": 12, "scored": 12, "reused": 0, "skipped": 0}
    got = snapshot(out)
    assert sorted(got) == sorted(reference)
    for name, data in reference.items():
        assert got[name] == data, name  # CSV, JSONL rows (scores, verdicts), masks, heat maps, report
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and any(r["defective"] for r in rows) and not all(r["defective"] for r in rows)


class Interrupted(Exception):
    pass


def test_ray_rerun_after_interruption_scores_only_the_rest(ray_instance, trained_run, demo_root, reference,
                                                           tmp_path, capsys):
    out = tmp_path / "ray"

    def interrupt(journaled):
        raise Interrupted(journaled)

    with pytest.raises(Interrupted):
        predict_on_ray(trained_run, [demo_root], out, actors=1, progress=False, on_journal=interrupt)
    journal = out / STATE_DIR / JOURNAL_NAME
    done = [json.loads(line)["key"] for line in journal.read_text().splitlines()]
    assert len(done) in (4, 8) and not (out / "predictions.csv").exists()  # one of the two chunks
    kept = {k: (out / (k.rsplit(".", 1)[0] + "_mask.png")).stat().st_mtime_ns for k in done}
    # a crash while appending and a killed writer's temporary file: both cleaned up on the rerun
    with journal.open("a") as f:
        f.write('{"key": "torn')
    stale = out / "test" / "good" / f"{TMP_PREFIX}{dead_tag()}-000_mask.png"
    stale.write_bytes(b"half")

    stats = predict_on_ray(trained_run, [demo_root], out, actors=1, progress=False, log=lambda *_: None)
    assert stats == {"images": 12, "scored": 12 - len(done), "reused": len(done), "skipped": 0}
    assert {k: (out / (k.rsplit(".", 1)[0] + "_mask.png")).stat().st_mtime_ns for k in done} == kept  # not rewritten
    assert snapshot(out) == reference
    assert not stale.exists()
    assert len(journal.read_text().splitlines()) == 12

    # a third run has nothing to do; one with another threshold is refused (entries never mix)
    stats = predict_on_ray(trained_run, [demo_root], out, progress=False, log=lambda *_: None)
    assert stats["scored"] == 0 and stats["reused"] == 12 and snapshot(out) == reference
    assert main(["predict", str(trained_run), str(demo_root), "--out", str(out), "--ray", "--threshold", "0.5",
                 "--quiet"]) == 2
    one_error_line(capsys, str(out), "threshold")


def test_ray_list_file_onnx_equals_predict(ray_instance, trained_run, demo_root, tmp_path, monkeypatch):
    """A list file (with a comment and a blank line) scored by the ONNX engine through the
    command line equals single-process ``predict`` of the same list, byte for byte: predict's
    onnxruntime is given one thread, as each actor has (onnxruntime's default is all cores, and
    MLAS blocks a GEMM's sum over K by the width of each thread's share of the outputs, so
    another thread count can sum in another order); the chunks are predict's, as above."""
    from ssimae.inference import onnx_detector

    open_export = onnx_detector.open_export
    monkeypatch.setattr(onnx_detector, "open_export", lambda path, threads=None: open_export(path, threads or 1))
    copy = tmp_path / "images"
    shutil.copytree(demo_root, copy)
    images = [p.relative_to(copy).as_posix() for p in walk_images(copy)]
    listing = copy / "archive.txt"
    listing.write_text("# archive of the line\n" + "\n".join(images[:5]) + "\n\n" + "\n".join(images[5:]) + "\n")
    export = tmp_path / "export"
    assert main(["export", str(trained_run), "--out", str(export)]) == 0
    single, on_ray = tmp_path / "single", tmp_path / "ray"
    assert main(["predict", str(export), str(listing), "--out", str(single), "--engine", "onnx", "--quiet"]) == 0
    assert main(["predict", str(export), str(listing), "--out", str(on_ray), "--engine", "onnx", "--ray",
                 "--ray-actors", "2", "--quiet"]) == 0
    assert snapshot(on_ray) == snapshot(single)
    assert len((on_ray / "predictions.csv").read_text().splitlines()) == 1 + len(images) == 13


def test_ray_bad_inputs_one_line_before_ray_starts(trained_run, demo_root, tmp_path, capsys):
    """A missing file in a list, or a bad --ray-threads: one line, exit 2, nothing written
    (no Ray instance needed: the inputs are checked first)."""
    listing = tmp_path / "list.txt"
    listing.write_text(f"{demo_root / 'test' / 'good' / '000.png'}\nmissing/001.png\n")
    out = tmp_path / "out"
    assert main(["predict", str(trained_run), str(listing), "--out", str(out), "--ray", "--quiet"]) == 2
    one_error_line(capsys, "missing/001.png", "line 2", str(listing))
    assert main(["predict", str(trained_run), str(demo_root), "--out", str(out), "--ray", "--ray-threads", "0",
                 "--quiet"]) == 2
    one_error_line(capsys, "--ray-threads")
    assert not out.exists()


# --- the journal, the job and the output folder: results never mixed -----------------------------

def test_ray_journal_matches_source_not_mtime(ray_instance, trained_run, tmp_path):
    """Cause 1: an image was done when its output name, size and mtime matched: other pixels
    (another folder, or the same file rewritten) with the same name, size and mtime were reused."""
    a, b = tmp_path / "inA", tmp_path / "inB"
    for k in range(3):
        image(a / f"{k}.bmp", k)
        image(b / f"{k}.bmp", 10 + k)
    for f in [*a.iterdir(), *b.iterdir()]:
        os.utime(f, ns=(1_767_225_600 * 10**9,) * 2)
    out = tmp_path / "o"

    def run(folder):
        return predict_on_ray(trained_run, [folder], out, actors=1, progress=False, log=quiet)

    assert run(a)["scored"] == 3
    scores_a = [r["score"] for r in rows(out)]
    assert run(b) == {"images": 3, "scored": 3, "reused": 0, "skipped": 0}
    assert [Path(r["source"]).parent for r in rows(out)] == [b] * 3
    assert [r["score"] for r in rows(out)] != scores_a
    for k in range(3):  # b's files now hold a's pixels: same names, sizes and mtimes
        shutil.copyfile(a / f"{k}.bmp", b / f"{k}.bmp")
        os.utime(b / f"{k}.bmp", ns=(1_767_225_600 * 10**9,) * 2)
    assert run(b)["reused"] == 0
    assert [r["score"] for r in rows(out)] == scores_a


def test_ray_done_needs_the_files_it_wrote(ray_instance, trained_run, tmp_path):
    """Cause 2: "done" meant the files exist: after another command rewrote them (plain predict
    at another threshold), a rerun said "already done" and kept the other files beside its CSV."""
    src = tmp_path / "in"
    for k in range(2):
        image(src / f"{k}.png", k)
    out = tmp_path / "o"
    assert predict_on_ray(trained_run, [src], out, actors=1, progress=False, log=quiet)["scored"] == 2
    first = snapshot(out)
    assert main(["predict", str(trained_run), str(src), "--out", str(out), "--threshold", "0.01", "--quiet"]) == 0
    assert snapshot(out) != first
    assert predict_on_ray(trained_run, [src], out, actors=1, progress=False, log=quiet)["reused"] == 0
    assert snapshot(out) == first


def test_ray_missing_job_json_does_not_adopt_the_old_journal(ray_instance, trained_run, tmp_path):
    """Cause 3: without job.json a "fresh" job adopted the old journal's entries (rows of
    another threshold)."""
    src = tmp_path / "in"
    for k in range(2):
        image(src / f"{k}.png", k)
    out = tmp_path / "o"
    predict_on_ray(trained_run, [src], out, actors=1, progress=False, log=quiet)
    (out / STATE_DIR / JOB_NAME).unlink()
    stats = predict_on_ray(trained_run, [src], out, actors=1, threshold=0.01, progress=False, log=quiet)
    assert stats["reused"] == 0 and stats["scored"] == 2
    assert [r["threshold"] for r in rows(out)] == [0.01, 0.01]


def test_ray_actors_score_the_run_the_job_started_with(ray_instance, trained_run, demo_root, reference, tmp_path):
    """Cause 4: actors loaded the run from disk: an actor (re)started after the run was
    recalibrated scored with the new thresholds inside the old job. Here an actor rewrites the
    run (other thresholds) after its first chunk and dies after its second; the restarted
    actor must still score with the job's run, so every row equals predict's with the old run."""
    from dataclasses import replace

    from ssimae.runs.checkpoint import load_run, save_run
    from ssimae.runs.settings import RunSettings

    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    original = hashlib.sha256((run / "model.pt").read_bytes()).hexdigest()
    loaded = load_run(run)
    inference = replace(loaded.settings.inference, threshold=loaded.settings.inference.threshold / 2,
                        image_threshold=loaded.settings.inference.image_threshold / 2)
    save_run(tmp_path / "other" / "model.pt", RunSettings(loaded.settings.train, inference), loaded.state)
    marks = str(tmp_path / "mark")

    def recalibrate_then_die(count, other=str(tmp_path / "other" / "model.pt"), target=str(run / "model.pt")):
        import os
        import shutil

        if not os.path.exists(marks + "1"):
            shutil.copyfile(other, target + ".new")
            os.replace(target + ".new", target)
            open(marks + "1", "w").close()
        elif not os.path.exists(marks + "2"):
            open(marks + "2", "w").close()
            os._exit(1)

    out = tmp_path / "ray"
    stats = predict_on_ray(run, [demo_root], out, actors=1, progress=False, log=quiet, after_batch=recalibrate_then_die)
    assert os.path.exists(marks + "2") and stats["scored"] == 12
    got = snapshot(out)
    for name in ("predictions.csv", "predictions.jsonl"):
        assert got[name] == reference[name]
    assert json.loads((out / STATE_DIR / JOB_NAME).read_text())["run_sha256"] == original


def test_ray_reserves_thumbs_and_keeps_user_files(ray_instance, trained_run, tmp_path):
    """Cause 5: --ray did not reserve the name ``thumbs`` (plain predict does): the report's
    thumbnail of tc/a.png was tc/thumbs/a.png's overlay. Cause 6: every ``.NAME.tmpDIGITS``
    under OUT was deleted by --ray."""
    tc = tmp_path / "tc"
    image(tc / "a.png", 1)
    image(tc / "thumbs" / "a.png", 2)
    single, on_ray = tmp_path / "single", tmp_path / "ray"
    one_thread_predict([str(trained_run), str(tc), "--out", str(single)])
    draft = on_ray / "sub" / ".draft.md.tmp1"
    draft.parent.mkdir(parents=True)
    draft.write_text("mine")
    predict_on_ray(trained_run, [tc], on_ray, actors=1, progress=False, log=quiet)
    assert snapshot(on_ray, skip=(STATE_DIR, "sub")) == snapshot(single)
    assert draft.read_text() == "mine"


def test_ray_journal_lines_not_entries_are_ignored_with_one_warning(ray_instance, trained_run, tmp_path, capsys):
    """Cause 15: journal lines that are JSON but not entries ({}, [1, 2], an entry missing a
    field) or not UTF-8 gave a KeyError traceback. Chosen: each is ignored (its image scored
    again), with one warning line."""
    src = tmp_path / "in"
    for k in range(2):
        image(src / f"{k}.png", k)
    out = tmp_path / "o"
    predict_on_ray(trained_run, [src], out, actors=1, progress=False, log=quiet)
    journal = out / STATE_DIR / JOURNAL_NAME
    lines = journal.read_bytes().splitlines()
    partial = json.loads(lines[1])
    del partial["sha256"]
    journal.write_bytes(b"\n".join([lines[0], b"{}", b"[1, 2]", b'"x"', json.dumps(partial).encode(),
                                    b'{"key": "\xff\xfe"}', b"\xff\xfe"]) + b"\n")
    capsys.readouterr()
    assert main(["predict", str(trained_run), str(src), "--out", str(out), "--ray", "--ray-actors", "1",
                 "--quiet"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "6 damaged line(s)" in err[0] and str(journal) in err[0], err
    assert len(rows(out)) == 2


def test_ray_skip_bad_counts_rows_written(ray_instance, trained_run, tmp_path, capsys):
    """Cause 17: --ray --skip-bad said "wrote predictions for 2 images" when 1 row was written."""
    src = tmp_path / "in"
    image(src / "a.png", 1)
    (src / "b.png").write_bytes(b"not a png")
    capsys.readouterr()
    assert main(["predict", str(trained_run), str(src), "--out", str(tmp_path / "o"), "--ray", "--ray-actors", "1",
                 "--skip-bad"]) == 0
    said = capsys.readouterr().out
    assert "wrote predictions for 1 images" in said, said
    assert len(rows(tmp_path / "o")) == 1


# --- checks before work: nothing written, no hang ------------------------------------------------

def test_ray_threads_above_the_cluster_cpus_refused(ray_instance, trained_run, demo_root, tmp_path, capsys):
    """Cause 8: --ray-threads 3 on a 2-CPU cluster never progressed (no actor fits). Now one
    line before any work; so are more actors than fit."""
    out = tmp_path / "o"
    for option in (["--ray-threads", "3"], ["--ray-actors", "3"]):
        assert main(["predict", str(trained_run), str(demo_root), "--out", str(out), "--ray", *option,
                     "--quiet"]) == 2
        one_error_line(capsys, option[0], "2 CPUs" if option[1] == "3" and option[0] == "--ray-threads" else "has 2")
    assert not out.exists()


def test_ray_not_importable_leaves_no_state(trained_run, demo_root, tmp_path, monkeypatch, capsys):
    """Cause 18: without Ray importable, --ray left OUT/.ssimae-ray behind."""
    monkeypatch.setitem(sys.modules, "ray", None)
    out = tmp_path / "o"
    assert main(["predict", str(trained_run), str(demo_root), "--out", str(out), "--ray", "--quiet"]) == 2
    one_error_line(capsys, "pip install")
    assert not out.exists()


def _cli(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        [str(Path(__file__).parents[2] / "src"), str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, "-m", "ssimae", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_ray_unreachable_address_fails_fast_and_honours_sigterm(ray_instance, trained_run, demo_root, tmp_path):
    """Cause 9: ``--ray 127.0.0.1:1`` retried for over 90 s, ignored SIGTERM and left its lock
    and state. Now: refused at once (a closed port), or after at most CONNECT_TIMEOUT_S (a
    port that never answers), SIGTERM ends it meanwhile, and nothing is written."""
    out = tmp_path / "o"
    t0 = time.monotonic()
    proc = _cli("predict", str(trained_run), str(demo_root), "--out", str(out), "--ray", "127.0.0.1:1", "--quiet")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and time.monotonic() - t0 < 60
    assert err.strip().count("\n") == 0 and "127.0.0.1:1" in err and "no Ray cluster answers" in err, err
    assert not out.exists()

    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        silent.settimeout(120)
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        proc = _cli("predict", str(trained_run), str(demo_root), "--out", str(out), "--ray", address, "--quiet")
        conn, _ = silent.accept()  # the command is waiting for an answer
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
        conn.close()
        assert proc.returncode == -signal.SIGTERM
        assert not out.exists()
        t0 = time.monotonic()
        with pytest.raises(Exception, match="no Ray cluster answers there"):
            check_reachable(address, timeout=1.0)
        assert time.monotonic() - t0 < 5
    check_reachable(ray.get_runtime_context().gcs_address)  # a real cluster answers
