"""The embedded engine: in-process, decode of the next chunk overlapped with scoring of this one.

The same pipeline as core.inference.forward.score_sources (worker threads decode and prepare while TensorFlow scores; both
release the GIL), plus per-file hashing for resume/duplicates and per-file errors instead of an exception.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from core.batch._core import InputError, input_spec, load_model, predict_tensors, prepare_bytes, read_hashed
from core.batch.sink import UNEXPECTED, RowSink, chunks
from core.batch.ledger import Ledger, Scored


def load_one(path: str, ledger: Ledger, spec, task: str) -> tuple:
    """(triage, file, sha256, tensor, error, withheld, population) for one path; never raises."""
    try:
        sha, data, err = read_hashed(path)
        kind = ledger.triage(path, sha)
        if kind != "new" or err is not None:
            return kind, path, sha, None, err, None, None
        try:
            x, withheld, population = prepare_bytes(data, path, spec, task)
            return kind, path, sha, x, None, withheld, population
        except InputError as exc:
            return kind, path, sha, None, str(exc), None, None
    except Exception as exc:  # one file must never stop the run
        return "new", path, None, None, UNEXPECTED.format(exc), None, None


def score_chunk(get_model, loaded: list, batch_size: int) -> list[Scored]:
    """Scores the chunk's decodable new files in one call; errors pass through as outcomes."""
    new = [t for t in loaded if t[0] == "new"]
    good = [t for t in new if t[4] is None]
    probs: dict[int, float] = {}
    if good:
        try:
            p = predict_tensors(get_model(), np.stack([t[3] for t in good]), batch_size)
            probs = {id(t): float(v) for t, v in zip(good, p)}
        except Exception as exc:  # e.g. a tensor of the wrong shape: the chunk's files get the error, the run goes on
            return [Scored(t[1], t[2], None, t[4] or UNEXPECTED.format(exc)) for t in new]
    return [Scored(t[1], t[2], probs.get(id(t)), t[4], t[5], t[6]) for t in new]


def run_local(files: list[str], ledger: Ledger, sink: RowSink, *, ctx, timings: dict, model=None,
              batch_size: int = 128, workers: int = 2) -> None:
    """Score `files` in this process; rows go to `sink` chunk by chunk (so a killed run keeps its finished chunks).

    Two decode threads: each file also takes a hash and the modality check, and on 2 cores four GIL-sharing threads
    cost more CPU per file than they saved (benchmarks.scale, 1,865 cells: 1, 2 and 4 threads within noise).
    """
    box = [model]

    def get_model():  # loaded on first use: a resumed run with nothing left to score needs no model
        if box[0] is None:
            box[0] = load_model(ctx.task, ctx.model)
        return box[0]

    spec = input_spec(ctx.task, ctx.model)
    parts = list(chunks(files, batch_size))

    def emit(loaded: list, outcomes: list[Scored]) -> None:
        sink.scored(outcomes)
        for kind, path, sha, *_ in loaded:
            if kind == "skip":
                sink.skipped()
            elif kind == "duplicate":
                sink.duplicate(path, sha)

    # Rows are built and written by one writer thread (in order), so TensorFlow goes on to the next chunk at once.
    with ThreadPoolExecutor(workers) as pool, ThreadPoolExecutor(1) as writer:
        def submit(chunk):
            return [pool.submit(load_one, f, ledger, spec, ctx.task) for f in chunk]

        pending = submit(parts[0]) if parts else []
        written = []
        for k in range(len(parts)):
            loaded = [f.result() for f in pending]
            pending = submit(parts[k + 1]) if k + 1 < len(parts) else []
            written.append(writer.submit(emit, loaded, score_chunk(get_model, loaded, batch_size)))
            while written and written[0].done():
                written.pop(0).result()  # a writing error (e.g. disk full) stops the run here
        for w in written:
            w.result()
