"""The Ray Data engine: the same job spread over a Ray cluster (or a local Ray started for it).

Stages, each a Ray Data operator so they stream and overlap:
  1. hash      tasks read each file and take its sha256 (the driver then decides skip / duplicate / score);
  2. prepare   tasks read, decode, run the modality check and prepare the files left to score;
  3. score     an actor pool (`map_batches` with a callable class): each actor loads and verifies the model once
               and scores batches with core.inference.forward.predict_tensors, so scores equal the embedded engine's;
  4. write     outcomes stream back to the driver, which writes the rows (the same writer as the embedded engine:
               one CSV/Parquet file, resumable).

Workers import `core` from the repository, so every node needs the repository (with models/) at the driver's path,
e.g. the same container image; PYTHONPATH is set for them through the runtime environment.
"""
from __future__ import annotations

import logging
import math
import os
import time

import numpy as np

from core.batch._core import REPO_ROOT, InputError, input_spec, load_model, predict_tensors, prepare_bytes, read_hashed
from core.batch.sink import UNEXPECTED, RowSink
from core.batch.ledger import Ledger, Scored

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
            ray.init(num_cpus=num_cpus, include_dashboard=False, runtime_env=runtime_env(),
                     logging_level=logging.WARNING, log_to_driver=False)
    except Exception as exc:  # ConnectionError, TimeoutError, RuntimeError, ...: all mean "no cluster to run on"
        where = f"the Ray cluster at {address!r}" if address else "a local Ray"
        raise ConnectionError(
            f"could not start or reach {where} ({type(exc).__name__}: {str(exc).strip()[:300]}). "
            "Check the address and that the cluster is up, or run on this machine with --engine local."
        ) from None
    return True, time.perf_counter() - t0


def _text(v) -> str:
    return "" if v is None else str(v)


def hash_batch(batch: dict) -> dict:
    """Stage 1: file -> sha256 ('' when unreadable) and the reader's error ('' when none)."""
    shas, errs = [], []
    for f in batch["file"]:
        try:
            sha, _, err = read_hashed(str(f))
        except Exception as exc:
            sha, err = None, UNEXPECTED.format(exc)
        shas.append(_text(sha))
        errs.append(_text(err))
    return {"file": batch["file"], "sha256": np.array(shas, dtype=object), "error": np.array(errs, dtype=object)}


def prepare_batch(batch: dict, task: str, model_id: str) -> dict:
    """Stage 2: read, decode and prepare; a file that fails keeps its row with the error and a zero tensor."""
    spec = input_spec(task, model_id)
    xs, errs, held = [], [], []
    for f, want in zip(batch["file"], batch["sha256"]):
        x, err, withheld = None, None, None
        try:
            sha, data, err = read_hashed(str(f))
            if err is None and sha != want:
                err = f"{os.path.basename(str(f))}: the file changed while the batch was running; run it again."
            if err is None:
                x, withheld = prepare_bytes(data, str(f), spec, task)
        except InputError as exc:
            err = str(exc)
        except Exception as exc:
            err = UNEXPECTED.format(exc)
        xs.append(x if x is not None else np.zeros((spec.size, spec.size, spec.channels), np.float32))
        errs.append(_text(err))
        held.append(_text(withheld))
    return {"file": batch["file"], "sha256": batch["sha256"], "error": np.array(errs, dtype=object),
            "withheld": np.array(held, dtype=object), "x": np.stack(xs)}


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
        good = np.array([not e for e in errs], dtype=bool)
        p = np.full(len(errs), np.nan)
        if good.any():
            try:
                p[good] = predict_tensors(self.model, batch["x"][good], self.batch_size)
            except Exception as exc:
                errs = np.array([e or UNEXPECTED.format(exc) for e in errs], dtype=object)
        return {"file": batch["file"], "sha256": batch["sha256"], "error": errs, "withheld": batch["withheld"],
                "probability": p}


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
        t0 = time.perf_counter()
        todo = []
        if files:
            hashed = (ray.data.from_items([{"file": f} for f in files], override_num_blocks=_blocks(len(files), 4 * batch_size))
                      .map_batches(hash_batch, batch_size=4 * batch_size, batch_format="numpy"))
            for b in hashed.iter_batches(batch_size=None, batch_format="numpy"):
                for f, sha, err in zip(b["file"], b["sha256"], b["error"]):
                    f, sha, err = str(f), (str(sha) or None), (str(err) or None)
                    kind = ledger.triage(f, sha)
                    if kind == "skip":
                        sink.skipped()
                    elif kind == "duplicate":
                        sink.duplicate(f, sha)
                    elif err is not None:
                        sink.scored([Scored(f, sha, None, err)])
                    else:
                        todo.append({"file": f, "sha256": sha})
        timings["hash_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        if todo:
            n_actors = actors or max(1, int(ray.cluster_resources().get("CPU", 2)) // 2)
            ds = (ray.data.from_items(todo, override_num_blocks=_blocks(len(todo), batch_size))
                  .map_batches(prepare_batch, batch_size=batch_size, batch_format="numpy", num_cpus=0.5,
                               fn_kwargs={"task": ctx.task, "model_id": ctx.model})
                  .map_batches(Scorer, batch_size=batch_size, batch_format="numpy", num_cpus=1,
                               compute=ray.data.ActorPoolStrategy(size=n_actors),
                               fn_constructor_kwargs={"task": ctx.task, "model_id": ctx.model, "batch_size": batch_size,
                                                     "threads": actor_threads}))
            first_n, first_t = 0, None
            for b in ds.iter_batches(batch_size=None, batch_format="numpy"):
                sink.scored([Scored(str(f), str(s) or None, None if e else float(p), str(e) or None, str(w) or None)
                             for f, s, e, w, p in zip(b["file"], b["sha256"], b["error"], b["withheld"],
                                                      b["probability"])])
                if first_t is None:  # actors started, model loaded, graph traced: the fixed cost ends here
                    first_n, first_t = len(b["file"]), time.perf_counter()
            timings["actors"] = n_actors
            timings["first_result_s"] = first_t - t1 if first_t else None
            rest = time.perf_counter() - first_t if first_t else 0.0
            timings["steady_files_per_s"] = (len(todo) - first_n) / rest if rest > 0 and len(todo) > first_n else None
        timings["score_s"] = time.perf_counter() - t1
    finally:
        if started and shutdown:
            ray.shutdown()
