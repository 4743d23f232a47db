"""Archive scoring on Ray (#22 part 2): ``ssimae predict ... --ray`` writes the same files as
single-process ``predict`` (every verdict row, score, mask, heat map, overlay, thumbnail),
survives a killed worker, and a rerun after an interruption scores only what was not done.

One local Ray instance (2 CPUs) serves the whole module: Ray takes ~10 s to start.
"""
import json
import os
import shutil

import pytest
import torch
from tests.helpers.clicheck import one_error_line

from ssimae.cli.main import main
from ssimae.data.datasets import walk_images

ray = pytest.importorskip("ray")

from ssimae.cluster.ray_scoring import JOURNAL_NAME, STATE_DIR, predict_on_ray  # noqa: E402


pytestmark = pytest.mark.kernels  # float comparisons across kernels: tests/helpers/floats.py

@pytest.fixture(scope="module")
def ray_instance():
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 2**20, log_to_driver=False,
             logging_level="warning")
    yield
    ray.shutdown()


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
    (out / "test" / "good" / ".000_mask.png.tmp999999").write_bytes(b"half")

    stats = predict_on_ray(trained_run, [demo_root], out, actors=1, progress=False, log=lambda *_: None)
    assert stats == {"images": 12, "scored": 12 - len(done), "reused": len(done), "skipped": 0}
    assert {k: (out / (k.rsplit(".", 1)[0] + "_mask.png")).stat().st_mtime_ns for k in done} == kept  # not rewritten
    assert snapshot(out) == reference
    assert not (out / "test" / "good" / ".000_mask.png.tmp999999").exists()
    assert len(journal.read_text().splitlines()) == 12

    # a third run has nothing to do; one with another threshold is refused (entries never mix)
    stats = predict_on_ray(trained_run, [demo_root], out, progress=False, log=lambda *_: None)
    assert stats["scored"] == 0 and stats["reused"] == 12 and snapshot(out) == reference
    assert main(["predict", str(trained_run), str(demo_root), "--out", str(out), "--ray", "--threshold", "0.5",
                 "--quiet"]) == 2
    one_error_line(capsys, str(out), "threshold")


def test_ray_list_file_onnx_equals_predict(ray_instance, trained_run, demo_root, tmp_path):
    """A list file (with a comment and a blank line) scored by the ONNX engine through the
    command line equals single-process ``predict`` of the same list."""
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
