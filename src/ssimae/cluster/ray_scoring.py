"""Archive scoring on Ray: ``ssimae predict RUN INPUT... --out OUT --ray [auto|ADDRESS]``.

The same outputs as single-process ``predict`` (:func:`ssimae.commands.predict.predict`):
per image OUT/<rel>_heatmap.png, _mask.png, _overlay.png (and <rel>.npy with --save-raw) and
its thumbnails, then OUT/predictions.csv, predictions.jsonl and report.html with the rows in
the order of the inputs (:func:`ssimae.data.inputs.collect_inputs`), whatever order the
images were scored in. Both are written by predict's own writer
(:class:`ssimae.reporting.predictions.PredictionWriter`: ``add`` in the actors,
``add_row`` and ``finish_predict`` in the driver).

How it runs: the driver (this process) lists the inputs, takes the output folder's lock
(:class:`ssimae.io.folders.RunLock`), cuts the inputs into predict's chunks of
:data:`ssimae.inference.scorer.IMAGES_PER_BATCH` consecutive images and builds a Ray Dataset of them;
``map_batches`` sends each chunk to one of a fixed pool of ``actors`` Ray actors
(``ActorPoolStrategy``), each holding one detector (torch :class:`ssimae.inference.detector.Detector`
or onnxruntime :class:`ssimae.runtime.OnnxDetector`) with ``threads`` threads. An actor
scores the chunk's images together (their patches share network batches exactly as in
``predict``, so the maps are bit for bit those of ``predict`` run with the same number of
threads: torch's CPU kernels round differently at other thread counts, by ~1e-7), writes
their files into OUT and returns one JSON entry per image. Actors write only while the lock
names their driver (checked before every chunk): they write on its behalf.

Restartable: an image is *done* when its entry is in the journal OUT/.ssimae-ray/done.jsonl.
The driver appends the entries of a batch (and fsyncs) only after the actor returned, that
is after every file of those images was written (each atomically, temporary file +
rename). A rerun into the same OUT with the same run and options skips every done image
whose files are all still there and whose input file has not changed (size, mtime), and
scores the chunks that are not all done; the final CSV, JSONL and report are rebuilt from the journal. So a
killed driver loses at most the batches in flight (their images are scored again), and a
killed actor loses nothing: Ray restarts it and retries its batch. A torn last journal
line (a crash while appending) is dropped. OUT/.ssimae-ray/job.json records what the
entries were computed with (model weights' SHA-256, engine, threshold, residual, smoothing,
--save-raw); a rerun with anything else is refused, so entries never mix.

Across machines: every node must see the inputs and OUT at the same paths (a shared file
system) and have ssimae installed; ``--ray ADDRESS`` joins the cluster.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
import time
import uuid
from pathlib import Path, PurePath
from typing import Callable, Iterable

import numpy as np
from tqdm.auto import tqdm

from ssimae.data.inputs import collect_inputs
from ssimae.errors import SsimaeError
from ssimae.inference.engines import open_detector
from ssimae.inference.scorer import IMAGES_PER_BATCH
from ssimae.io.files import atomic_write_text
from ssimae.io.folders import LOCK_NAME, RunLock, prepare_out_dir
from ssimae.reporting.predictions import PredictionWriter

STATE_DIR = ".ssimae-ray"  # under OUT: job.json and the journal done.jsonl
JOB_NAME, JOURNAL_NAME, OWNER_NAME = "job.json", "done.jsonl", "owner"  # owner: the running job's token
MAX_BLOCKS = 4096  # Ray Data blocks of chunks; up to this many, one chunk per block (the journal's granularity)
_TMP = re.compile(r"^\..+\.tmp\d+$")  # the atomic writer's temporary files (ssimae.io.files)


# --- the job's identity and its journal ----------------------------------------------------------

def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def weights_file(run: str | os.PathLike, engine: str) -> Path:
    """The file holding the model's weights: the checkpoint (torch) or the .onnx file (onnx);
    imports no torch for the onnx engine."""
    if engine == "onnx":
        from ssimae.inference.onnx_detector import MODEL_FILE

        p = Path(run)
        return p / MODEL_FILE if p.is_dir() else p
    from ssimae.runs.checkpoint import resolve_checkpoint

    return resolve_checkpoint(run)


def job_identity(run, engine: str, threshold: float, residual: str, smooth: float, save_raw: bool) -> dict:
    """What a journal entry was computed with; entries of another identity are never mixed in."""
    return {"weights_sha256": _sha256(weights_file(run, engine)), "engine": engine, "threshold": float(threshold),
            "residual": residual, "smooth": float(smooth), "save_raw": bool(save_raw)}


def _stamp(path: Path) -> list[int]:
    """[size, mtime in ns] of an input file: a changed input is scored again."""
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


class Journal:
    """OUT/.ssimae-ray/done.jsonl: one JSON entry per image scored completely ({"key": output
    path as in the verdicts, "stamp": [size, mtime_ns] of the input, "row": the report row of
    :class:`ssimae.reporting.predictions.PredictionWriter`, "files": the files written, relative to OUT}).
    Appended by the driver only; a torn last line is cut off when the journal is opened."""

    def __init__(self, out: Path, identity: dict):
        self.out = out
        self.folder = out / STATE_DIR
        self.path = self.folder / JOURNAL_NAME
        self.folder.mkdir(exist_ok=True)
        job = self.folder / JOB_NAME
        if job.exists():
            try:
                stored = json.loads(job.read_text())
            except (OSError, json.JSONDecodeError):
                stored = None
            if stored != identity:
                changed = ", ".join(k for k in identity if not isinstance(stored, dict) or stored.get(k) != identity[k])
                raise SsimaeError(f"holds predictions made with another model or options ({changed or 'job.json'} "
                                  f"differ); choose another --out, or delete the folder to start over", out)
        else:
            atomic_write_text(job, json.dumps(identity, indent=2, sort_keys=True) + "\n")
        self.entries: dict[str, dict] = {}
        if self.path.exists():
            data = self.path.read_bytes()
            whole = data[:data.rfind(b"\n") + 1]
            if len(whole) != len(data):  # a crash while appending: drop the torn line
                with open(self.path, "r+b") as f:
                    f.truncate(len(whole))
            for line in whole.decode("utf-8").splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue
                self.entries[entry["key"]] = entry
        self._file = open(self.path, "a", encoding="utf-8")

    def done(self, key: str, source: Path) -> bool:
        """True if image ``key`` (input file ``source``) was scored completely and its files are all there."""
        e = self.entries.get(key)
        return (e is not None and e["stamp"] == _stamp(source)
                and all((self.out / f).is_file() for f in e["files"]))

    def append(self, entries: Iterable[dict]) -> None:
        entries = list(entries)
        # json.dumps keeps the keys' order: the rows come back written exactly as they were
        self._file.write("".join(json.dumps(e) + "\n" for e in entries))
        self._file.flush()
        os.fsync(self._file.fileno())
        self.entries.update((e["key"], e) for e in entries)

    def close(self) -> None:
        self._file.close()


def remove_temporaries(out: Path) -> int:
    """Remove the atomic writer's temporary files anywhere under ``out`` (left by a killed
    actor: under the lock, no writer of an earlier job is alive)."""
    n = 0
    for root, _dirs, files in os.walk(out):
        for name in files:
            if _TMP.match(name):
                Path(root, name).unlink(missing_ok=True)
                n += 1
    return n


# --- the actors ----------------------------------------------------------------------------------

def _written_files(rel: PurePath, row: dict, save_raw: bool) -> list[str]:
    """The files :meth:`PredictionWriter.add` wrote for one image, relative to OUT."""
    base = rel.as_posix()
    files = [f"{base}_heatmap.png", f"{base}_mask.png", f"{base}_overlay.png", *row["thumbs"].values()]
    return files + ([f"{base}.npy"] if save_raw else [])


class ScoreActor:
    """One Ray actor of the pool: one detector, scoring chunks of images and writing their files.

    Called with a batch of chunks {"chunk": int64 (n,), "items": str (n,)}, each item the JSON
    list of a chunk's [input index, input file, output name without suffix]; returns
    {"chunk": (n,), "entries": JSON list of the journal entries of the chunk's images,
    "errors": JSON list of [input index, path, problem] of its unreadable images}. A chunk's
    images go through the network together, as predict's chunks of IMAGES_PER_BATCH do.
    ``after_batch(images scored by this actor so far)``: called after each chunk (tests use
    it to kill a worker mid-way)."""

    def __init__(self, run: str, out: str, lock_owner: tuple[str, str], options: dict, threads: int = 1,
                 after_batch: Callable[[int], None] | None = None):
        if options["engine"] == "torch":
            import torch

            torch.set_num_threads(threads)
        options = dict(options)
        self.save_raw = options.pop("save_raw", False)
        self.detector, self.threshold, self.residual = open_detector(run, threads=threads, **options)
        self.out, self.lock_owner = Path(out), lock_owner
        self.after_batch, self.count = after_batch, 0

    def _check_lock(self) -> None:
        """SsimaeError unless the folder's lock still names this job's driver and the job
        token is this job's (an actor of an interrupted job stops instead of writing)."""
        try:
            owner = ((self.out / LOCK_NAME).read_text(), (self.out / STATE_DIR / OWNER_NAME).read_text())
        except OSError:
            owner = None
        if owner != self.lock_owner:
            raise SsimaeError("the output folder's lock no longer belongs to this job; stopping", self.out)

    def score_chunk(self, items: list) -> tuple[list[dict], list]:
        """(journal entries, [index, path, problem] of unreadable images) of one chunk: its
        images scored together (:meth:`ssimae.inference.scorer.Scorer.predict_files`) and
        written by a :class:`ssimae.reporting.predictions.PredictionWriter` on OUT."""
        self._check_lock()
        index = {path: (i, PurePath(rel)) for i, path, rel in items}
        writer = PredictionWriter(self.out, self.threshold, self.save_raw)
        entries, errors = [], []
        for scored in self.detector.predict_files(list(index), self.threshold, self.residual, skip_bad=True,
                                                  chunk=len(index)):
            i, rel = index[scored.path]
            if scored.error is not None:
                errors.append([i, scored.error.path or scored.path, scored.error.problem])
                continue
            writer.add(Path(scored.path), rel, scored.image, scored.prediction)
            row = writer.rows[-1]
            entries.append({"key": row["path"], "stamp": _stamp(Path(scored.path)), "row": row,
                            "files": _written_files(rel, row, self.save_raw)})
        self.count += len(entries)
        if self.after_batch is not None:
            self.after_batch(self.count)
        return entries, errors

    def __call__(self, batch: dict) -> dict:
        done = [self.score_chunk(json.loads(items)) for items in batch["items"]]
        return {"chunk": np.asarray(batch["chunk"]),
                "entries": np.array([json.dumps(e) for e, _ in done], dtype=object),
                "errors": np.array([json.dumps(x) for _, x in done], dtype=object)}


# --- the driver ----------------------------------------------------------------------------------

def connect(address: str | None = "auto", num_cpus: int | None = None, quiet: bool = True):
    """Join Ray: an instance this process already started is reused; ``address`` "auto"
    joins RAY_ADDRESS or the cluster running on this machine and otherwise starts a local
    one (``num_cpus``: its CPUs, default all); any other value is a cluster's address
    (``HOST:6379``, ``ray://HOST:10001``). Returns True when this call started the connection."""
    try:
        import ray
    except ImportError:
        raise SsimaeError("--ray needs Ray Data: pip install 'ssimae[ray]' (or pip install 'ray[data]')") from None
    if ray.is_initialized():
        return False
    kwargs = dict(include_dashboard=False, log_to_driver=not quiet, logging_level="warning")
    try:
        if address in (None, "auto"):
            ray.init(num_cpus=num_cpus, **kwargs)
        else:
            ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise SsimaeError(f"--ray {address}: cannot connect to Ray ({first[:160]})") from None
    return True


def predict_on_ray(run: str | os.PathLike, inputs: list[str | os.PathLike], out: str | os.PathLike, *,
                   address: str | None = "auto", actors: int | None = None, threads: int = 1,
                   threshold: float | None = None, save_raw: bool = False, device: str | None = None,
                   residual: str | None = None, smooth: float | None = None, engine: str = "torch",
                   skip_bad: bool = False, progress: bool = True, log=print,
                   after_batch: Callable[[int], None] | None = None,
                   on_journal: Callable[[int], None] | None = None) -> dict:
    """:func:`ssimae.commands.predict.predict` on Ray (module doc); returns {"images": inputs,
    "scored": images scored by this call, "reused": done images skipped, "skipped":
    unreadable images skipped (``skip_bad``)}.

    ``actors``: the actor pool's size (default: the cluster's CPUs // ``threads``, at least 1);
    ``threads``: CPUs (torch / onnxruntime threads) per actor; ``device`` "cuda..." gives each
    actor one GPU. ``after_batch``: passed to every :class:`ScoreActor`; ``on_journal(images
    journaled by this call)``: called by the driver after each journal append (tests use them
    to kill a worker, or to interrupt the driver, mid-way)."""
    if threads < 1 or (actors is not None and actors < 1):
        raise SsimaeError(f"--ray-actors and --ray-threads must be at least 1, got {actors} and {threads}")
    options = dict(threshold=threshold, device=device, residual=residual, smooth=smooth, engine=engine)
    detector, t, name = open_detector(run, **options)  # the options are checked before Ray starts
    files = collect_inputs(inputs, exclude=out)
    out = prepare_out_dir(out)
    identity = job_identity(run, engine, t, name, detector.settings.smooth, save_raw)
    with RunLock(out) as lock:
        remove_temporaries(out)
        journal = Journal(out, identity)
        try:
            keys = [rel.as_posix() + f.suffix for f, rel in files]
            # predict's chunks of IMAGES_PER_BATCH inputs: the same images go through the network together, so
            # the maps are bit for bit predict's (at the same thread count); a chunk is scored unless all are done
            chunks = [[[i, os.fspath(files[i][0]), files[i][1].as_posix()] for i in range(a, min(a + IMAGES_PER_BATCH,
                                                                                                   len(files)))]
                      for a in range(0, len(files), IMAGES_PER_BATCH)]
            todo = [c for c in chunks if not all(journal.done(keys[i], files[i][0]) for i, _, _ in c)]
            n_todo = sum(len(c) for c in todo)
            stats = {"images": len(files), "scored": 0, "reused": len(files) - n_todo, "skipped": 0}
            skipped: list[tuple[int, str, str]] = []  # (input index, path, problem)
            if todo:
                owner = (lock.path.read_text(), uuid.uuid4().hex)
                atomic_write_text(out / STATE_DIR / OWNER_NAME, owner[1])
                _run_actors(run, out, owner, todo, journal, skipped, stats, dict(options, save_raw=save_raw),
                            address, actors, threads, skip_bad, progress, after_batch, on_journal)
            writer = PredictionWriter(out, t, save_raw)
            for _, path, problem in sorted(skipped):  # in the order of the inputs
                writer.skip(path, problem)
            for key in keys:
                if key in journal.entries:
                    writer.add_row(journal.entries[key]["row"])
            writer.finish_predict(run, inputs, detector, name, threshold, len(files), log)
        finally:
            journal.close()
    if stats["reused"]:
        log(f"{stats['reused']} image(s) were already done in {out} and not scored again")
    return stats


def _run_actors(run, out: Path, owner: tuple[str, str], chunks: list[list], journal: Journal, skipped: list,
                stats: dict, options: dict, address, actors, threads: int, skip_bad: bool, progress: bool,
                after_batch, on_journal) -> None:
    """Score ``chunks`` (lists of [input index, file, output name]) with a pool of actors and
    journal their entries as they come back."""
    started = connect(address, quiet=not progress)
    import ray
    import ray.data

    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        if actors is None:
            actors = max(1, int(ray.cluster_resources().get("CPU", 1) // threads))
        gpu = str(options.get("device") or "").startswith("cuda")
        rows = [{"chunk": k, "items": json.dumps(c)} for k, c in enumerate(chunks)]
        ds = ray.data.from_items(rows, override_num_blocks=min(len(rows), MAX_BLOCKS))
        ds = ds.map_batches(ScoreActor, batch_size=1, batch_format="numpy",
                            compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=threads,
                            num_gpus=1 if gpu else None,
                            fn_constructor_kwargs=dict(run=os.fspath(Path(run).resolve()), out=os.fspath(out.resolve()),
                                                       lock_owner=owner, options=options, threads=threads,
                                                       after_batch=after_batch))
        bar = tqdm(total=sum(len(c) for c in chunks), disable=not progress,
                   desc=f"scoring on Ray ({actors} actor{'s' if actors > 1 else ''})")
        t0 = time.monotonic()
        batches = iter(ds.iter_batches(batch_size=None, batch_format="numpy"))
        try:
            for batch in batches:
                for entries, errors in zip(batch["entries"], batch["errors"]):
                    new = json.loads(entries)
                    journal.append(new)
                    stats["scored"] += len(new)
                    bar.update(len(new))
                    for index, path, problem in json.loads(errors):
                        if not skip_bad:
                            raise SsimaeError(problem, path)
                        print(f"ssimae: skipping {path}: {problem}", file=sys.stderr)
                        skipped.append((index, path, problem))
                        stats["skipped"] += 1
                        bar.update()
                if on_journal is not None:
                    on_journal(stats["scored"])
        finally:  # an interrupted driver shuts the execution and its actors down before it lets go of OUT
            close = getattr(batches, "close", None)
            if close is not None:
                close()
        bar.close()
        if progress:
            rate = stats["scored"] / max(time.monotonic() - t0, 1e-9)
            print(f"scored {stats['scored']} images on {actors} Ray actor(s) of {threads} thread(s): "
                  f"{rate:.2f} images/s", file=sys.stderr)
    finally:
        if started:
            ray.shutdown()

