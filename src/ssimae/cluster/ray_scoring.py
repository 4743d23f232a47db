"""Archive scoring on Ray: ``ssimae predict RUN INPUT... --out OUT --ray [auto|ADDRESS]``.

The same outputs as single-process ``predict`` (:func:`ssimae.commands.predict.predict`):
per image OUT/<rel>_heatmap.png, _mask.png, _overlay.png (and <rel>.npy with --save-raw) and
its thumbnails, then OUT/predictions.csv, predictions.jsonl and report.html with the rows in
the order of the inputs (:func:`ssimae.data.inputs.collect_inputs`), whatever order the
images were scored in. Both are written by predict's own writer
(:class:`ssimae.reporting.predictions.PredictionWriter`: ``add`` in the actors,
``add_row`` and ``finish_predict`` in the driver).

How it runs: the driver (this process) checks everything first (Ray importable, the run and
options, the inputs, the cluster reachable within :data:`CONNECT_TIMEOUT_S` and large enough
for ``--ray-threads``), and only then takes the output folder's lock
(:class:`ssimae.io.folders.RunLock`) and writes anything. It cuts the inputs into predict's chunks of
:data:`ssimae.inference.scorer.IMAGES_PER_BATCH` consecutive images and builds a Ray Dataset of them;
``map_batches`` sends each chunk to one of a fixed pool of ``actors`` Ray actors
(``ActorPoolStrategy``), each holding one detector (torch :class:`ssimae.inference.detector.Detector`
or onnxruntime :class:`ssimae.runtime.OnnxDetector`) with ``threads`` threads. An actor
scores the chunk's images together (their patches share network batches exactly as in
``predict``, so the maps are bit for bit those of ``predict`` run with the same number of
threads: torch's CPU kernels round differently at other thread counts, by ~1e-7), writes
their files into OUT and returns one JSON entry per image. Actors write only while the lock
names their driver (checked before every chunk): they write on its behalf.

The run, read once: the driver reads the run's file (model.pt, or the export's .onnx: weights,
settings and thresholds) once; its SHA-256 names the job, and those very bytes are what the
actors load (OUT/.ssimae-ray/run-<hash>.pt|.onnx, written by the driver), so a run
recalibrated or retrained while the job runs changes nothing in it.

Restartable: the journal OUT/.ssimae-ray/done.jsonl holds one entry per image scored
completely: the job (:func:`job_identity`: the run's SHA-256, engine, thresholds, residual,
smoothing, --save-raw), the input's absolute path and SHA-256 (of the bytes the actor read),
the report row, and every file written for it with its SHA-256. The driver appends the entries
of a chunk (and fsyncs) only after the actor returned, that is after every file of those
images was written (each atomically). An image is *done* when an entry of this job holds its
input path, its input's content hash as it is now, and files that are all there with the
hashes the entry recorded (so a file rewritten by another command, or an input replaced by
other pixels, is scored again). A rerun scores the chunks that are not all done; the final
CSV, JSONL and report are rebuilt from the journal. So a killed driver loses at most the
batches in flight, and a killed actor loses nothing: Ray restarts it and retries its batch.
A torn last journal line (a crash while appending) is dropped; other damaged lines (not JSON,
not UTF-8, not an entry) are ignored with one warning, and their images scored again.
OUT/.ssimae-ray/job.json records the job; a rerun of another job is refused, so an OUT never
mixes two jobs' results (entries of another job are never used, even without job.json).

Across machines: every node must see the inputs and OUT at the same paths (a shared file
system) and have ssimae installed; ``--ray ADDRESS`` joins the cluster.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import sys
import time
import uuid
from pathlib import Path, PurePath
from typing import Callable, Iterable

import numpy as np
from tqdm.auto import tqdm

from ssimae.data.inputs import collect_inputs
from ssimae.errors import SsimaeError, printable
from ssimae.inference.engines import open_detector
from ssimae.inference.scorer import IMAGES_PER_BATCH
from ssimae.io.files import atomic_write_bytes, atomic_write_text
from ssimae.io.folders import LOCK_NAME, RunLock
from ssimae.reporting.predictions import OWN_FOLDERS, PredictionWriter

STATE_DIR = ".ssimae-ray"  # under OUT: job.json, the journal done.jsonl, the run's snapshot
JOB_NAME, JOURNAL_NAME, OWNER_NAME = "job.json", "done.jsonl", "owner"  # owner: the running job's token
MAX_BLOCKS = 4096  # Ray Data blocks of chunks; up to this many, one chunk per block (the journal's granularity)
CONNECT_TIMEOUT_S = 15.0  # --ray ADDRESS: the longest wait for a cluster to answer
ROW_KEYS = ("path", "score", "defective", "defect_area", "n_regions", "regions", "threshold", "thumbs")


# --- the job's identity and its journal ----------------------------------------------------------

def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 (hex) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def weights_file(run: str | os.PathLike, engine: str) -> Path:
    """The one file holding the run's weights, settings and thresholds: the checkpoint (torch)
    or the .onnx file (onnx); imports no torch for the onnx engine."""
    if engine == "onnx":
        from ssimae.inference.onnx_detector import MODEL_FILE

        p = Path(run)
        return p / MODEL_FILE if p.is_dir() else p
    from ssimae.runs.checkpoint import resolve_checkpoint

    return resolve_checkpoint(run)


def job_identity(run_sha256: str, engine: str, threshold: float, image_threshold: float | None, residual: str,
                 smooth: float, save_raw: bool) -> dict:
    """What a journal entry was computed with; entries of another identity are never mixed in."""
    return {"run_sha256": run_sha256, "engine": engine, "threshold": float(threshold),
            "image_threshold": None if image_threshold is None else float(image_threshold),
            "residual": residual, "smooth": float(smooth), "save_raw": bool(save_raw)}


def job_id(identity: dict) -> str:
    """The job's name in each journal entry: the SHA-256 of its identity (sorted JSON)."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def source_name(path: str | os.PathLike) -> str:
    """An input as the journal names it: its absolute path."""
    return os.path.abspath(path)


def _is_entry(e) -> bool:
    """True if ``e`` is a well-formed journal entry (of any job); files stay inside OUT."""
    return (isinstance(e, dict) and all(isinstance(e.get(k), str) for k in ("job", "key", "source", "sha256"))
            and isinstance(e.get("row"), dict) and all(k in e["row"] for k in ROW_KEYS)
            and isinstance(e["row"]["thumbs"], dict) and isinstance(e.get("files"), dict)
            and all(isinstance(f, str) and isinstance(h, str) and not PurePath(f).is_absolute()
                    and ".." not in PurePath(f).parts for f, h in e["files"].items()))


class Journal:
    """OUT/.ssimae-ray/done.jsonl (module doc): one JSON entry per image scored completely
    ({"job", "key": output path as in the verdicts, "source": the input's absolute path,
    "sha256": the input's, "row": the report row of
    :class:`ssimae.reporting.predictions.PredictionWriter`, "files": {file relative to OUT: its
    SHA-256}}). Appended by the driver only, under the folder's lock; a torn last line is cut
    off when the journal is opened; entries of other jobs are ignored, damaged lines too (one warning)."""

    def __init__(self, out: Path, identity: dict):
        self.out = out
        self.folder = out / STATE_DIR
        self.path = self.folder / JOURNAL_NAME
        self.job = job_id(identity)
        self.folder.mkdir(exist_ok=True)
        job = self.folder / JOB_NAME
        if job.exists():
            try:
                stored = json.loads(job.read_bytes())
            except (OSError, ValueError):
                stored = None
            if stored != identity:
                changed = ", ".join(k for k in identity if not isinstance(stored, dict) or stored.get(k) != identity[k])
                raise SsimaeError(f"holds predictions made with another model or options ({changed or 'job.json'} "
                                  f"differ); choose another --out, or delete the folder to start over", out)
        else:
            atomic_write_text(job, json.dumps(identity, indent=2, sort_keys=True) + "\n")
        self.entries: dict[str, dict] = {}
        if self.path.exists():
            self._read()
        self._file = open(self.path, "a", encoding="utf-8")

    def _read(self) -> None:
        """Load this job's entries; cut a torn last line; warn once about damaged lines."""
        data = self.path.read_bytes()
        whole = data[:data.rfind(b"\n") + 1]
        if len(whole) != len(data):  # a crash while appending: drop the torn line
            with open(self.path, "r+b") as f:
                f.truncate(len(whole))
        damaged = 0
        for line in whole.splitlines():
            try:
                entry = json.loads(line.decode("utf-8"))
            except ValueError:  # not UTF-8 (UnicodeDecodeError) or not JSON
                entry = None
            if not _is_entry(entry):
                damaged += 1
            elif entry["job"] == self.job:
                self.entries[entry["key"]] = entry
        if damaged:
            print(f"ssimae: warning: {printable(str(self.path))}: {damaged} damaged line(s) ignored; "
                  f"their images are scored again", file=sys.stderr)

    def done(self, key: str, source: Path) -> bool:
        """True if image ``key`` (input file ``source``) was scored completely from the input
        as it is now, and every file written for it is still the one written."""
        e = self.entries.get(key)
        if e is None or e["source"] != source_name(source):
            return False
        try:
            return e["sha256"] == sha256_file(source) and all(
                sha256_file(self.out / f) == h for f, h in e["files"].items())
        except OSError:  # a file gone or unreadable
            return False

    def append(self, entries: Iterable[dict]) -> None:
        entries = [dict(e, job=self.job) for e in entries]
        # json.dumps keeps the keys' order: the rows come back written exactly as they were
        self._file.write("".join(json.dumps(e) + "\n" for e in entries))
        self._file.flush()
        os.fsync(self._file.fileno())
        self.entries.update((e["key"], e) for e in entries)

    def close(self) -> None:
        self._file.close()


def snapshot_run(out: Path, data: bytes, sha: str, suffix: str) -> Path:
    """OUT/.ssimae-ray/run-<sha>.<suffix>: the run's bytes the job was started with, which the
    actors load (other jobs' snapshots are removed)."""
    path = out / STATE_DIR / f"run-{sha[:16]}{suffix}"
    for old in path.parent.glob("run-*"):
        if old != path:
            old.unlink(missing_ok=True)
    if not path.is_file() or sha256_file(path) != sha:
        atomic_write_bytes(path, data)
    return path


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
    ``run``: the job's snapshot of the run (:func:`snapshot_run`), refused unless its SHA-256
    is ``run_sha256``. ``after_batch(images scored by this actor so far)``: called after each
    chunk (tests use it to kill a worker mid-way)."""

    def __init__(self, run: str, run_sha256: str, out: str, lock_owner: tuple[str, str], options: dict,
                 threads: int = 1, after_batch: Callable[[int], None] | None = None):
        if sha256_file(run) != run_sha256:
            raise SsimaeError("the run's snapshot is not the one this job started with", run)
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
        written by a :class:`ssimae.reporting.predictions.PredictionWriter` on OUT. An input's
        hash is taken before it is read: an input replaced meanwhile is scored again by a rerun."""
        self._check_lock()
        index = {path: (i, PurePath(rel)) for i, path, rel in items}
        digests = {}
        for path in index:
            try:
                digests[path] = sha256_file(path)
            except OSError:  # the scorer reports it
                digests[path] = ""
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
            files = {f: sha256_file(self.out / f) for f in _written_files(rel, row, self.save_raw)}
            entries.append({"key": row["path"], "source": source_name(scored.path), "sha256": digests[scored.path],
                            "row": row, "files": files})
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

def require_ray():
    """The ``ray`` module; SsimaeError (one line) when Ray Data is not installed."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise SsimaeError("--ray needs Ray Data: pip install 'ssimae[ray]' (or pip install 'ray[data]')") from None
    return ray


_ADDRESS = re.compile(r"^(?:ray://)?(\[[0-9A-Fa-f:.]+\]|[^:/\[\]]+):(\d{1,5})$")
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # + empty SETTINGS


def check_reachable(address: str, timeout: float | None = None) -> None:
    """SsimaeError (one line) unless a gRPC server (a Ray cluster's GCS, or Ray Client) answers
    at ``address`` (HOST:PORT or ray://HOST:PORT) within ``timeout`` seconds (default
    :data:`CONNECT_TIMEOUT_S`): it must answer HTTP/2's connection preface with its SETTINGS
    frame. Ray itself retries an unreachable cluster for minutes."""
    m = _ADDRESS.match(address)
    if m is None:
        raise SsimaeError(f"--ray {address}: not an address (give auto, HOST:PORT or ray://HOST:PORT)")
    host, port = m.group(1).strip("[]"), int(m.group(2))
    deadline = time.monotonic() + (CONNECT_TIMEOUT_S if timeout is None else timeout)
    try:
        with socket.create_connection((host, port), timeout=max(deadline - time.monotonic(), 0.1)) as sock:
            sock.sendall(_HTTP2_PREFACE)
            header = b""
            while len(header) < 9:
                sock.settimeout(max(deadline - time.monotonic(), 0.01))
                got = sock.recv(9 - len(header))
                if not got:
                    break
                header += got
    except OSError as err:
        why = "no answer" if isinstance(err, TimeoutError) else (err.strerror or type(err).__name__)
        raise SsimaeError(f"--ray {address}: no Ray cluster answers there ({why}); start one "
                          f"(ray start --head) or check the address") from None
    if len(header) < 9 or header[3] != 0x04:
        raise SsimaeError(f"--ray {address}: what answers there is not a Ray cluster (no gRPC)")


def connect(address: str | None = "auto", num_cpus: int | None = None, quiet: bool = True):
    """Join Ray: an instance this process already started is reused; ``address`` "auto"
    joins RAY_ADDRESS or the cluster running on this machine and otherwise starts a local
    one (``num_cpus``: its CPUs, default all); any other value is a cluster's address
    (``HOST:6379``, ``ray://HOST:10001``), which must answer within :data:`CONNECT_TIMEOUT_S`
    (:func:`check_reachable`). Returns True when this call started the connection."""
    ray = require_ray()
    if ray.is_initialized():
        return False
    given = os.environ.get("RAY_ADDRESS") if address in (None, "auto") else address
    if given and given not in ("auto", "local"):
        check_reachable(given)
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


def pool_size(actors: int | None, threads: int, gpu: bool) -> int:
    """The actor pool's size on the connected cluster (default: its CPUs // ``threads``, with
    ``gpu`` at most its GPUs);
    SsimaeError when the cluster cannot hold one actor of ``threads`` CPUs (Ray would wait
    for ever), or ``actors`` of them, or a GPU each with ``gpu``."""
    import ray

    res = ray.cluster_resources()
    cpus, gpus = res.get("CPU", 0), res.get("GPU", 0)
    if threads > cpus:
        raise SsimaeError(f"--ray-threads {threads} is more than the {cpus:g} CPUs of the Ray cluster: no actor "
                          f"could start; give at most --ray-threads {int(cpus)}")
    if actors is not None and actors * threads > cpus:
        raise SsimaeError(f"--ray-actors {actors} of --ray-threads {threads} need {actors * threads} CPUs; the Ray "
                          f"cluster has {cpus:g}")
    n = actors or max(1, int(cpus // threads))
    if gpu:
        if gpus < (actors or 1):
            raise SsimaeError(f"--device cuda gives each of {actors or 1} actor(s) one GPU; the Ray cluster has "
                              f"{gpus:g}")
        n = min(n, int(gpus))
    return n


def predict_on_ray(run: str | os.PathLike, inputs: list[str | os.PathLike], out: str | os.PathLike, *,
                   address: str | None = "auto", actors: int | None = None, threads: int = 1,
                   threshold: float | None = None, save_raw: bool = False, device: str | None = None,
                   residual: str | None = None, smooth: float | None = None, engine: str = "torch",
                   skip_bad: bool = False, progress: bool = True, log=print,
                   after_batch: Callable[[int], None] | None = None,
                   on_journal: Callable[[int], None] | None = None) -> dict:
    """:func:`ssimae.commands.predict.predict` on Ray (module doc); returns {"images": inputs,
    "scored": images scored by this call, "reused": done images skipped, "skipped":
    unreadable images skipped (``skip_bad``)}. Nothing is written before every check passed.

    ``actors``: the actor pool's size (default: the cluster's CPUs // ``threads``, at least 1);
    ``threads``: CPUs (torch / onnxruntime threads) per actor; ``device`` "cuda..." gives each
    actor one GPU. ``after_batch``: passed to every :class:`ScoreActor`; ``on_journal(images
    journaled by this call)``: called by the driver after each journal append (tests use them
    to kill a worker, or to interrupt the driver, mid-way)."""
    if threads < 1 or (actors is not None and actors < 1):
        raise SsimaeError(f"--ray-actors and --ray-threads must be at least 1, got {actors} and {threads}")
    require_ray()
    options = dict(threshold=threshold, device=device, residual=residual, smooth=smooth, engine=engine)
    detector, t, name, (data, run_sha, suffix) = _open_run(run, options)
    files = collect_inputs(inputs, exclude=out, reserved=OWN_FOLDERS + (STATE_DIR,))
    identity = job_identity(run_sha, engine, t, None if threshold is not None else detector.settings.image_threshold,
                            name, detector.settings.smooth, save_raw)
    started = connect(address, quiet=not progress)
    try:
        n_actors = pool_size(actors, threads, str(device or "").startswith("cuda"))
        with RunLock(out, "ssimae predict --ray") as lock:
            return _score(run, inputs, Path(out), lock, files, detector, t, name, threshold, identity,
                          (data, suffix), dict(options, save_raw=save_raw), n_actors, threads, skip_bad,
                          progress, log, after_batch, on_journal)
    finally:
        if started:
            import ray

            ray.shutdown()


def _open_run(run, options: dict):
    """(detector, threshold, residual name, (the run file's bytes, their SHA-256, the file's
    suffix)) for ``options``: the bytes are those the detector was loaded from (read before and
    after loading; SsimaeError if the run changed meanwhile). A fused run (several network
    files) is refused: the job's snapshot is one file."""
    from ssimae.inference.fusion import is_fusion

    if is_fusion(run):
        raise SsimaeError("--ray scores runs of one network file; this fused run has several: score it without "
                          "--ray", run)
    source = weights_file(run, options["engine"])
    try:
        before = sha256_file(source)
    except OSError:
        before = None  # open_detector says what is wrong
    detector, t, name = open_detector(run, **options)  # the options are checked before Ray starts
    data = source.read_bytes()
    run_sha = hashlib.sha256(data).hexdigest()
    if run_sha != before:
        raise SsimaeError("the run changed while it was read (retrained or recalibrated?); try again", source)
    return detector, t, name, (data, run_sha, source.suffix)


def _score(run, inputs, out: Path, lock: RunLock, files, detector, t: float, name: str, threshold, identity: dict,
           run_bytes: tuple[bytes, str], options: dict, actors: int, threads: int, skip_bad: bool, progress: bool,
           log, after_batch, on_journal) -> dict:
    """:func:`predict_on_ray` inside the output folder's lock."""
    journal = Journal(out, identity)
    try:
        keys = [rel.as_posix() + printable(f.suffix) for f, rel in files]
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
            snapshot = snapshot_run(out, run_bytes[0], identity["run_sha256"], run_bytes[1])
            owner = (lock.path.read_text(), uuid.uuid4().hex)
            atomic_write_text(out / STATE_DIR / OWNER_NAME, owner[1])
            _run_actors(snapshot, identity["run_sha256"], out, owner, todo, journal, skipped, stats, options,
                        actors, threads, skip_bad, progress, after_batch, on_journal)
        writer = PredictionWriter(out, t, options["save_raw"])
        for _, path, problem in sorted(skipped):  # in the order of the inputs
            writer.skip(path, problem)
        for key in keys:
            if key in journal.entries:
                writer.add_row(journal.entries[key]["row"])
        writer.finish_predict(run, inputs, detector, name, threshold, log)
    finally:
        journal.close()
    if stats["reused"]:
        log(f"{stats['reused']} image(s) were already done in {printable(str(out))} and not scored again")
    return stats


def _run_actors(run: Path, run_sha: str, out: Path, owner: tuple[str, str], chunks: list[list], journal: Journal,
                skipped: list, stats: dict, options: dict, actors: int, threads: int, skip_bad: bool, progress: bool,
                after_batch, on_journal) -> None:
    """Score ``chunks`` (lists of [input index, file, output name]) with a pool of actors on
    the connected cluster and journal their entries as they come back."""
    import ray
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    gpu = str(options.get("device") or "").startswith("cuda")
    rows = [{"chunk": k, "items": json.dumps(c)} for k, c in enumerate(chunks)]
    ds = ray.data.from_items(rows, override_num_blocks=min(len(rows), MAX_BLOCKS))
    ds = ds.map_batches(ScoreActor, batch_size=1, batch_format="numpy",
                        compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=threads,
                        num_gpus=1 if gpu else None,
                        fn_constructor_kwargs=dict(run=os.fspath(run.resolve()), run_sha256=run_sha,
                                                   out=os.fspath(out.resolve()), lock_owner=owner, options=options,
                                                   threads=threads, after_batch=after_batch))
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
                    print(f"ssimae: skipping {printable(path)}: {printable(problem)}", file=sys.stderr)
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
