"""Label an archive: chunks of reports → part files → one Parquet, on local processes or a Dask cluster.

The input is read once, in order, and cut into chunks of `chunk_size` records. Each chunk is
labeled by `label_chunk` (a pure function of the chunk and the `Settings`, so any process or cluster
worker gives the same rows) and written as its own part file in a folder beside the output. A chunk
is done when its `.done.json` exists; `resume=True` skips done chunks. When every chunk is done, the
parts are copied in order into the output (and evidence) file, atomically, and the folder removed
(or handed to `merge`, which `--update` uses to splice them into the labels it keeps).
Memory stays flat: at most `window` chunks are in flight, and nothing else is kept per report.
An input of one chunk is labeled in this process: starting workers would cost more than it saves.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from itertools import chain, islice
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from cxrcore.errors import InputError, ToolkitError
from cxrcore.labels import label_schema
from cxrcore.output import Outputs, atomic_path, atomic_text, encode_metadata, exclusive
from cxrcore.workers import watch_parent

from .cache import CacheSpec, DecisionStore, decision_key, parse_key
from .evidence import MENTION_SCHEMA
from .known_inputs import MARKS_KEY, Marks
from .labeler import Carry, Labeler
from .lexicon import Lexicon
from .parse import model_identity
from .readers import Record, Report, Skipped

PARTS_SUFFIX = ".parts"
REPORT_TEXT = "Reports"  # the CheXpert labeler's column of report texts
DIGEST_COLUMN = "report_digest"  # of each report's content, for `label --update`


def read_parquet(path: str | Path) -> pa.Table:
    """A whole Parquet file, without pyarrow's dataset layer (which imports pandas: a quarter second)."""
    with pq.ParquetFile(path) as file:
        return file.read()


def report_digest(report: Report) -> str:
    """A digest of everything a report's rows are made from (not where it was read from)."""
    content = json.dumps([report.report_id, report.text, report.sections, report.images, report.patient_id])
    return hashlib.blake2b(content.encode(), digest_size=12).hexdigest()


@dataclass(frozen=True)
class Settings:
    """Everything that decides a label: the same settings give the same rows on any worker.

    The lexicon travels as loaded (frozen) data, not as a path: a worker applies exactly the rules
    whose digest the output records, whatever its disk holds or held when it started."""

    lexicon: Lexicon
    model: str
    method: str
    report_text: bool = False  # keep each report's text beside its labels (the CheXpert CSV layout needs it)
    cache: CacheSpec | None = None  # the persistent decision cache (cache.py), None for none
    carry: Carry | None = None  # `--relabel-changed-rules`: the earlier lexicon's decisions that may be reused

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.lexicon.digest, self.model, self.method)


_LABELERS: dict[tuple[Any, ...], Labeler] = {}  # per worker process, built on first use
_LABELER_LIMIT = 4  # a long-lived worker that sees many lexicons keeps only the latest few


def keys(settings: Settings) -> tuple[str, str]:
    """(decision namespace, parse namespace) of the cache for `settings`, with this machine's spaCy and model."""
    description, spacy_version = model_identity(settings.model)
    parses = parse_key(settings.model, description, spacy_version)
    return decision_key(parses, settings.lexicon.digest, settings.method), parses


def labeler_for(settings: Settings) -> Labeler:
    """This process's labeler for `settings` (the model is loaded when a sentence must first be parsed)."""
    key = (*settings.key, settings.cache, settings.carry)
    if key not in _LABELERS:
        if len(_LABELERS) >= _LABELER_LIMIT:
            old = _LABELERS.pop(next(iter(_LABELERS)))
            if old.store is not None:
                old.store.close()
        store = DecisionStore(settings.cache, *keys(settings)) if settings.cache else None
        _LABELERS[key] = Labeler(settings.lexicon, settings.model, method=settings.method, store=store,
                                 carry=settings.carry)
    return _LABELERS[key]


def describe_model(settings: Settings) -> dict[str, str]:
    """The parser's name and version and the cache's namespace, as a worker sees them (this fails early
    when the model is missing)."""
    description, _ = model_identity(settings.model)
    decisions, parses = keys(settings)
    return {"parser": description, "cache_key": decisions, "cache_parse_key": parses}


def label_chunk(reports: list[Report], settings: Settings, with_mentions: bool = True
                ) -> tuple[pa.Table, pa.Table | None, list[str]]:
    """Labels (one row per image) and mentions of a chunk of reports, as Arrow tables, and how many of the
    reports have a sentence the changed rules touch (with `settings.carry`; ids)."""
    labeler = labeler_for(settings)
    rows: list[dict[str, Any]] = []
    mentions: list[dict[str, Any]] = []
    touched: list[str] = []
    for done in labeler.label(reports):
        report = done.report
        text = {REPORT_TEXT: report.text} if settings.report_text else {}
        digest = report_digest(report)
        for image_id, image_path in report.images or [(None, None)]:
            rows.append({"report_id": report.report_id, "image_id": image_id, "patient_id": report.patient_id,
                         "image_path": image_path, **done.labels, **text, DIGEST_COLUMN: digest})
        if with_mentions:
            mentions.extend({"report_id": report.report_id, **vars(m)} for m in done.mentions)
        if done.touched:
            touched.append(report.report_id)
    schema = labels_part_schema(labeler.lexicon.label_columns, settings.report_text)
    evidence = pa.Table.from_pylist(mentions, schema=MENTION_SCHEMA) if with_mentions else None
    return pa.Table.from_pylist(rows, schema=schema), evidence, touched


def labels_part_schema(label_columns: list[str], report_text: bool) -> pa.Schema:
    """The labels' columns as `label` writes them: SPEC's, the report text for the CheXpert layout, the digest."""
    schema = label_schema(label_columns, {})
    if report_text:
        schema = schema.append(pa.field(REPORT_TEXT, pa.string()))
    return schema.append(pa.field(DIGEST_COLUMN, pa.string()))


# --- engines: submit work, wait for some of it ------------------------------------------------

class InlineEngine:
    """Runs each chunk in this process as it is submitted (one worker; nothing to pickle)."""

    workers = 1
    local = True

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # handed to the caller through the future, as a pool would
            future.set_exception(exc)
        return future

    def wait_some(self, futures: Iterable[Future]) -> set[Future]:
        return set(futures)

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


class ProcessEngine:
    """A pool of local processes (spawned, so each loads its own model once) that die with their parent.
    The processes start with the first chunk submitted."""

    local = True

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                                         initializer=watch_parent, initargs=(os.getpid(),))

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        return self._pool.submit(fn, *args)

    def wait_some(self, futures: Iterable[Future]) -> set[Future]:
        return wait(list(futures), return_when=FIRST_COMPLETED).done

    def close(self) -> None:
        self._pool.shutdown(cancel_futures=True)

    def abort(self) -> None:
        """Stop now (an error or an interruption): cancel what waits, terminate what runs."""
        processes = list((getattr(self._pool, "_processes", None) or {}).values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(timeout=5)


class DaskEngine:
    """A Dask distributed cluster: `scheduler` is its address (tcp://host:8786) or a Client."""

    local = False

    def __init__(self, scheduler: Any) -> None:
        try:
            from distributed import Client
        except ImportError:
            raise ToolkitError("--engine dask needs dask.distributed: pip install 'chestxray-toolkit[dask]'") from None
        self._own = not hasattr(scheduler, "submit")
        try:
            self._client = Client(scheduler, timeout="20s") if self._own else scheduler
        except OSError as exc:
            raise ToolkitError(f"cannot reach the Dask scheduler at {scheduler} ({exc})") from None
        self.workers = max(1, sum(w.get("nthreads", 1) for w in self._client.scheduler_info()["workers"].values()))
        self._submitted: list[Any] = []

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        future = self._client.submit(fn, *args, pure=False)
        self._submitted = [f for f in self._submitted if not f.done()] + [future]
        return future

    def wait_some(self, futures: Iterable[Any]) -> set[Any]:
        from distributed import wait as dask_wait

        return set(dask_wait(list(futures), return_when="FIRST_COMPLETED").done)

    def close(self) -> None:
        if self._own:
            self._client.close()

    def abort(self) -> None:
        """Cancel this client's tasks on the cluster (its workers are the cluster's, not ours to stop)."""
        self._client.cancel([f for f in self._submitted if not f.done()])
        self.close()


def make_engine(engine: str, workers: int, scheduler: Any = None) -> InlineEngine | ProcessEngine | DaskEngine:
    """`local` with `workers` processes (1: in this process), or `dask` on `scheduler`."""
    if engine == "dask":
        if scheduler is None:
            raise ToolkitError("--engine dask needs --scheduler ADDRESS (e.g. tcp://scheduler-host:8786)")
        return DaskEngine(scheduler)
    return InlineEngine() if workers <= 1 else ProcessEngine(workers)


# --- the run ----------------------------------------------------------------------------------

@dataclass
class Outcome:
    """What a run did: reports labeled, rows written, reports skipped (with their reasons)."""

    reports: int
    rows: int
    skipped: list[Skipped]
    touched: list[str] = field(default_factory=list)  # with `Settings.carry`: reports the changed rules touch


def parts_folder(output: Path) -> Path:
    return output.with_name(f".{output.name}{PARTS_SUFFIX}")


def fingerprint(inputs: list[Path], settings: Settings, chunk_size: int, evidence: bool, encoding: str) -> str:
    """What must match for a resumed run to continue an earlier one: inputs (size, time), settings."""
    files = []
    for root in inputs:
        paths = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        files += [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths]
    state = {"files": files, "settings": [*settings.key, settings.report_text], "chunk_size": chunk_size,
             "evidence": evidence, "encoding": encoding}
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()


def run_labeling(records: Iterable[Record], output: Path, evidence: Path | None, settings: Settings,
                 meta: dict[str, Any], label_columns: list[str], engine: Any, state: str, chunk_size: int,
                 resume: bool, on_skip: Callable[[Skipped], None], on_progress: Callable[[int], None],
                 inputs: Iterable[Path] = (), merge: Merge | None = None, marks: Marks | None = None) -> Outcome:
    """Label every record into `output` (and `evidence`), continuing a killed run when `resume`.

    The outputs are checked before any work and written together at the end; the output's lock is
    held throughout, so a second run on the same output (or parts folder) is refused. `merge` writes
    the outputs from the parts instead of `_merge` (and may find no report labeled normal). `marks`, filled as
    the records are read, go into the metadata (known_inputs.py)."""
    with Outputs([output, evidence], inputs) as outputs, exclusive(output, *([evidence] if evidence else [])):
        parts = _prepare_parts(output, state, resume)
        try:
            outcome = _run(records, parts, output, evidence, settings, meta, label_columns, engine, chunk_size,
                           on_skip, on_progress, outputs, merge, marks)
        except ToolkitError:
            # Bad input or settings: the parts cannot be resumed (fixing the input changes the fingerprint).
            # A killed or crashed run keeps them for --resume.
            shutil.rmtree(parts, ignore_errors=True)
            raise
        outputs.commit()
        shutil.rmtree(parts)
        return outcome


# Writes the outputs from the finished parts: (parts folder, outputs, metadata, outcome) → label rows written.
Merge = Callable[[Path, Outputs, dict[str, Any], Outcome], int]


def _run(records: Iterable[Record], parts: Path, output: Path, evidence: Path | None, settings: Settings,
         meta: dict[str, Any], label_columns: list[str], engine: Any, chunk_size: int,
         on_skip: Callable[[Skipped], None], on_progress: Callable[[int], None], outputs: Outputs,
         merge: Merge | None, marks: Marks | None) -> Outcome:
    # Local workers share this machine's model and spaCy, so this process can say which they are.
    described = describe_model(settings) if engine.local else engine.submit(describe_model, settings).result()
    meta = {**meta, **described}
    outcome = Outcome(0, 0, [])
    pending: dict[Any, tuple[int, int, list[Skipped]]] = {}
    chunks = _chunks(records, chunk_size)
    first = list(islice(chunks, 2))
    if len(first) < 2 and engine.local:
        engine = InlineEngine()  # one chunk: workers would only add their start-up
    window = 2 * engine.workers
    for index, chunk in enumerate(chain(first, chunks)):
        reports = [r for r in chunk if isinstance(r, Report)]
        skipped = [r for r in chunk if isinstance(r, Skipped)]
        done_file = parts / f"{index:06d}.done.json"
        if done_file.exists():
            done = json.loads(done_file.read_text())
            outcome.skipped += skipped
            outcome.reports += len(reports)
            outcome.touched += done.get("touched", [])
            on_progress(len(reports))
            continue
        for record in skipped:
            on_skip(record)
        if not reports and merge is not None:
            _write_part(parts, index, None, None, [], 0, skipped)
            continue
        pending[engine.submit(label_chunk, reports, settings, evidence is not None)] = (index, len(reports), skipped)
        while len(pending) >= window:
            _collect(engine, pending, parts, outcome, on_progress)
    while pending:
        _collect(engine, pending, parts, outcome, on_progress)
    if marks is not None:  # every input is read now
        meta[MARKS_KEY] = marks.to_json()
    if merge is not None:
        outcome.rows = merge(parts, outputs, meta, outcome)
        return outcome
    if outcome.reports == 0:
        raise InputError(f"no report could be labeled ({len(outcome.skipped)} skipped, each named above); "
                         f"nothing was written, {output} is untouched")
    outcome.rows = _merge(parts, output, evidence, label_columns, meta, outputs)
    if settings.report_text:
        outcome.rows = _chexpert_csv(outputs.path(output), label_columns)
    return outcome


def _chexpert_csv(path: str, label_columns: list[str]) -> int:
    """Rewrite the merged labels (at `path`) in the CheXpert labeler's CSV layout: one row per report,
    `Reports`, the no-finding column, then the findings, as 1.0, 0.0, -1.0 or blank. Returns the rows."""
    frame = pq.read_table(path).to_pandas().drop_duplicates("report_id")
    label_columns = [label_columns[-1], *label_columns[:-1]]  # CheXpert puts "No Finding" first
    out = frame[[REPORT_TEXT, *label_columns]].copy()
    for column in label_columns:
        out[column] = out[column].astype("float64")
    out.to_csv(path, index=False, float_format="%.1f")
    return len(out)


def _prepare_parts(output: Path, state: str, resume: bool) -> Path:
    parts = parts_folder(output)
    state_file = parts / "state.json"
    if parts.exists():
        if not resume:
            raise ToolkitError(f"{parts} holds an unfinished run; pass --resume to continue it, or delete the folder")
        try:
            recorded = json.loads(state_file.read_text())["fingerprint"]
        except (OSError, ValueError, KeyError, TypeError):
            raise ToolkitError(f"{parts} is damaged (no readable state.json); delete it to start afresh") from None
        if recorded != state:
            raise ToolkitError(f"{parts} was made from other inputs or settings; delete it to start afresh")
        return parts
    parts.mkdir(parents=True)
    atomic_text(state_file, json.dumps({"fingerprint": state}))
    return parts


def _chunks(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    iterator = iter(records)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _collect(engine: Any, pending: dict[Any, tuple[int, int, list[Skipped]]], parts: Path, outcome: Outcome,
             on_progress: Callable[[int], None]) -> None:
    """Write the part files of whichever chunks have finished."""
    for future in engine.wait_some(pending):
        index, reports, skipped = pending.pop(future)
        labels, mentions, touched = future.result()
        _write_part(parts, index, labels, mentions, touched, reports, skipped)
        outcome.reports += reports
        outcome.skipped += skipped
        outcome.touched += touched
        on_progress(reports)


def _write_part(parts: Path, index: int, labels: pa.Table | None, mentions: pa.Table | None, touched: list[str],
                reports: int, skipped: list[Skipped]) -> None:
    """A chunk's part files; the `.done.json` last."""
    for kind, table in (("labels", labels), ("mentions", mentions)):
        if table is not None:
            with atomic_path(parts / f"{index:06d}.{kind}.parquet") as tmp:
                pq.write_table(table, tmp)
    atomic_text(parts / f"{index:06d}.done.json",
                json.dumps({"reports": reports, "skipped": [asdict(s) for s in skipped], "touched": touched}))


def _merge(parts: Path, output: Path, evidence: Path | None, label_columns: list[str], meta: dict[str, Any],
           outputs: Outputs) -> int:
    """Copy the parts, in chunk order, into the (temporary) output files; return the number of label rows."""
    rows = 0
    labels_schema = pq.read_schema(next(iter(sorted(parts.glob("*.labels.parquet"))))).with_metadata(
        label_schema(label_columns, meta).metadata)
    targets = [("labels", output, labels_schema)]
    if evidence is not None:
        targets.append(("mentions", evidence, MENTION_SCHEMA.with_metadata(encode_metadata(meta))))
    for kind, target, schema in targets:
        with pq.ParquetWriter(outputs.path(target), schema) as writer:
            for part in sorted(parts.glob(f"*.{kind}.parquet")):
                table = read_parquet(part).replace_schema_metadata(schema.metadata)
                if table.num_rows:
                    writer.write_table(table)
                if kind == "labels":
                    rows += table.num_rows
    return rows

