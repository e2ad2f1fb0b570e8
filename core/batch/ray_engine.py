"""The Ray Data engine: the same job spread over a Ray cluster (or a local Ray started for it).

Stages, each a Ray Data operator so they stream and overlap (one pass over the files, so the scoring actors start
while the first files are read):
  1. prepare   tasks read each file once, take its sha256, ask the run's ledger (an actor holding a copy of the
               driver's: skip / duplicate / score), then decode, run the modality check and prepare what is to score;
  2. score     an actor pool (`map_batches` with a callable class): each actor loads and verifies the model once
               and scores batches with core.inference.forward.predict_tensors, so scores equal the embedded engine's;
  3. write     outcomes stream back to the driver, which writes the rows (the same writer as the embedded engine:
               one CSV/Parquet file, resumable).

Workers import `core` from the repository, so every node needs the repository (with models/) at the driver's path,
e.g. the same container image; PYTHONPATH is set for them through the runtime environment.
"""
from __future__ import annotations

import logging
import math
import os
import time
from contextlib import contextmanager

import numpy as np

from core.batch._core import REPO_ROOT, InputError, input_spec, load_model, predict_tensors, prepare_bytes, read_hashed
from core.batch.sink import UNEXPECTED, RowSink
from core.batch.ledger import Ledger, Scored

# Half a CPU per prepare task: with whole-CPU tasks a 2-CPU Ray ran one at a time and the scorer starved (steady
# state 346 vs 476 files/s, benchmarks.scale, 10,000 cells).
PREPARE_CPUS = 0.5
_FORWARDED_ENV = ("SECONDLOOK_DATA", "SECONDLOOK_ENGINE", "TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")


def runtime_env() -> dict:
    env = {"PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    env.update({k: os.environ[k] for k in _FORWARDED_ENV if k in os.environ})
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return {"env_vars": env}


def _probe(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast on a host:port nobody listens on: ray.init would retry for minutes before giving up."""
    import socket

    hostport = address.split("://", 1)[-1]
    if ":" not in hostport or hostport.startswith("["):
        return  # 'auto', 'local' or an unusual form: ray.init decides (and fails fast for those)
    host, _, port = hostport.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except (OSError, ValueError) as exc:
        raise ConnectionError(f"nothing answers at {hostport} ({exc})") from None


def connect(address: str | None, num_cpus: int = 2) -> tuple[bool, float]:
    """Join the cluster at `address`, or start a local Ray with `num_cpus`; (started here?, seconds it took)."""
    import ray

    if ray.is_initialized():
        return False, 0.0
    t0 = time.perf_counter()
    try:
        if address:
            _probe(address)
            ray.init(address=address, runtime_env=runtime_env(), logging_level=logging.WARNING, log_to_driver=False)
        else:
            # A local Ray's workers inherit the environment it starts with: set there rather than as a runtime
            # environment, so Ray's pre-started workers serve the job (1.9 -> 1.1 s to a first actor, 4.4 -> 3.4 s to
            # a first Ray Data batch, measured here).
            with _environ(runtime_env()["env_vars"]):
                ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING,
                         log_to_driver=False)
    except Exception as exc:  # ConnectionError, TimeoutError, RuntimeError, ...: all mean "no cluster to run on"
        where = f"the Ray cluster at {address!r}" if address else "a local Ray"
        raise ConnectionError(
            f"could not start or reach {where} ({type(exc).__name__}: {str(exc).strip()[:300]}). "
            "Check the address and that the cluster is up, or run on this machine with --engine local."
        ) from None
    return True, time.perf_counter() - t0


@contextmanager
def _environ(values: dict):
    """os.environ with `values` set for the duration (the driver's own environment is restored after)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class LedgerActor(Ledger):
    """The run's ledger as a Ray actor, built from the driver's state in its constructor: an actor runs its
    constructor before any method, so the prepare tasks' first triage already sees it, and the driver need not wait
    for the actor's process to start (2.4 s here)."""

    def __init__(self, state: dict) -> None:
        self.__setstate__(state)


def _text(v) -> str:
    return "" if v is None else str(v)


def read_prepare_batch(batch: dict, task: str, model_id: str, ledger) -> dict:
    """Stage 1: read and hash each file once, ask the ledger actor which to score, decode, check and prepare those.

    A file not to score (already in the output, or a copy of one scored) passes with its triage and a 1-pixel
    placeholder tensor; a file that fails keeps its row with the error.
    """
    import ray

    spec = input_spec(task, model_id)
    files = [str(f) for f in batch["file"]]
    reads = []
    for f in files:
        try:
            reads.append(read_hashed(f))
        except Exception as exc:
            reads.append((None, None, UNEXPECTED.format(exc)))
    kinds = ray.get(ledger.triage_many.remote(files, [r[0] for r in reads]))
    blank = np.zeros((1, 1, spec.channels), np.float32)
    xs, errs, held, pops = [], [], [], []
    for f, (sha, data, err), kind in zip(files, reads, kinds):
        x, withheld, population = blank, None, None
        if kind == "new" and err is None:
            try:
                x, withheld, population = prepare_bytes(data, f, spec, task)
            except InputError as exc:
                err = str(exc)
            except Exception as exc:
                err = UNEXPECTED.format(exc)
        xs.append(x)
        errs.append(_text(err))
        held.append(_text(withheld))
        pops.append(_text(population))
    column = np.empty(len(xs), dtype=object)
    column[:] = xs
    return {"file": np.array(files, dtype=object), "sha256": np.array([_text(r[0]) for r in reads], dtype=object),
            "kind": np.array(kinds, dtype=object), "error": np.array(errs, dtype=object),
            "withheld": np.array(held, dtype=object), "population": np.array(pops, dtype=object), "x": column}


class Scorer:
    """Stage 3, one per actor: the model is loaded (and its checksum verified) once, then scores every batch."""

    def __init__(self, task: str, model_id: str, batch_size: int = 128, threads: int | None = None) -> None:
        import tensorflow as tf

        # Ray sizes a 1-CPU actor's OpenMP pool to one thread; scoring is most of the work per image (docs/scale.md),
        # so TensorFlow's pool is set explicitly to the node's cores, shared with the light decode tasks. (On the
        # shared 2-core dev machine it made no measurable difference; on an idle multi-core node it is untested.)
        n = threads or os.cpu_count() or 1
        tf.config.threading.set_intra_op_parallelism_threads(n)
        self.model = load_model(task, model_id)
        self.batch_size = batch_size

    def __call__(self, batch: dict) -> dict:
        errs = batch["error"]
        good = np.array([k == "new" and not e for k, e in zip(batch["kind"], errs)], dtype=bool)
        p = np.full(len(errs), np.nan)
        if good.any():
            try:
                x = np.stack([batch["x"][i] for i in np.flatnonzero(good)])
                p[good] = predict_tensors(self.model, x, self.batch_size)
            except Exception as exc:
                errs = np.array([e or (UNEXPECTED.format(exc) if g else e) for e, g in zip(errs, good)], dtype=object)
        return {"file": batch["file"], "sha256": batch["sha256"], "kind": batch["kind"], "error": errs,
                "withheld": batch["withheld"], "population": batch["population"], "probability": p}


def _blocks(n: int, batch_size: int) -> int:
    return max(1, math.ceil(n / batch_size))


def run_ray(files: list[str], ledger: Ledger, sink: RowSink, *, ctx, timings: dict, address: str | None = None,
            num_cpus: int = 2, actors: int | None = None, actor_threads: int | None = None, batch_size: int = 128,
            shutdown: bool = True, model=None) -> None:
    """Score `files` on Ray Data; rows reach `sink` as the scoring actors finish batches."""
    del model  # actors load their own copy
    import ray
    import ray.data

    started, init_s = connect(address, num_cpus)
    timings["ray_init_s"] = init_s
    try:
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # per-dataset INFO lines would flood a batch log
        dctx = ray.data.DataContext.get_current()
        dctx.enable_progress_bars = False  # our bar counts rows; Ray's own would interleave with it
        if hasattr(dctx, "print_on_execution_start"):
            dctx.print_on_execution_start = False
        t1 = time.perf_counter()
        if files:
            # the triage as an actor holding a copy of the driver's ledger (the driver's keeps the results for the rows)
            ledger_actor = ray.remote(num_cpus=0)(LedgerActor).remote(ledger.__getstate__())
            n_actors = actors or max(1, int(ray.cluster_resources().get("CPU", 2)) // 2)
            ds = (ray.data.from_items([{"file": f} for f in files], override_num_blocks=_blocks(len(files), batch_size))
                  .map_batches(read_prepare_batch, batch_size=batch_size, batch_format="numpy", num_cpus=PREPARE_CPUS,
                               fn_kwargs={"task": ctx.task, "model_id": ctx.model, "ledger": ledger_actor})
                  .map_batches(Scorer, batch_size=batch_size, batch_format="numpy", num_cpus=1,
                               compute=ray.data.ActorPoolStrategy(size=n_actors),
                               fn_constructor_kwargs={"task": ctx.task, "model_id": ctx.model, "batch_size": batch_size,
                                                     "threads": actor_threads}))
            first_n, first_t, n_new = 0, None, 0
            for b in ds.iter_batches(batch_size=None, batch_format="numpy"):
                outcomes = []
                for f, sha, kind, e, w, pop, p in zip(b["file"], b["sha256"], b["kind"], b["error"], b["withheld"],
                                                      b["population"], b["probability"]):
                    f, sha = str(f), (str(sha) or None)
                    if kind == "skip":
                        sink.skipped()
                    elif kind == "duplicate":
                        sink.duplicate(f, sha)
                    else:
                        outcomes.append(Scored(f, sha, None if e else float(p), str(e) or None, str(w) or None,
                                               str(pop) or None))
                sink.scored(outcomes)
                n_new += len(outcomes)
                if first_t is None and outcomes:  # actors started, model loaded, graph traced: the fixed cost ends here
                    first_n, first_t = len(outcomes), time.perf_counter()
            timings["actors"] = n_actors
            timings["first_result_s"] = first_t - t1 if first_t else None
            rest = time.perf_counter() - first_t if first_t else 0.0
            timings["steady_files_per_s"] = (n_new - first_n) / rest if rest > 0 and n_new > first_n else None
        timings["score_s"] = time.perf_counter() - t1
    finally:
        if started and shutdown:
            ray.shutdown()
