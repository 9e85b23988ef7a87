"""`predict`'s decoding: a chunk of image files → the network's 8-bit inputs (the viewer's films, a
DICOM film's identifiers), on worker processes that import no torch (they start in a fraction of a
second) and die with their parent. The decode is images.decode, the one `fit`, `score` and
`localize` read with, so `predict` sees the tensors `score` sees."""

from __future__ import annotations

import os
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context

import numpy as np

from cxrcore.workers import watch_parent

from .images import ImageError, decode, is_dicom
from .viewer import FILM_BUDGET, film_pixels, film_uri


@dataclass(frozen=True)
class Decoded:
    """One file: its (size, size) uint8 input and original (width, height), its film for the viewer
    (a data URI, when asked for), a DICOM film's identifiers (dicom.identifiers), or the reason it
    cannot be read."""

    image: np.ndarray | None = None
    original: tuple[int, int] = (0, 0)
    film: str | None = None
    identifiers: dict[str, str | None] | None = None
    error: str | None = None


def decode_chunk(paths: list[str], size: int, films: list[bool], patient: bool = False,
                 film_budget: int = FILM_BUDGET) -> list[Decoded]:
    """Decode each path at `size`; where `films` says so, also its film for the page (the same decode at
    the film's size, as JPEG within `film_budget` bytes); a DICOM film's UIDs (and PatientID if `patient`)."""
    out = []
    for path, film in zip(paths, films):
        try:
            image, original = decode(path, size)
            uri = None
            if film:
                pixels = film_pixels(*original)
                uri = film_uri(image if pixels == size else decode(path, pixels)[0], film_budget)
            found = None
            if is_dicom(path):
                from .dicom import identifiers  # pydicom, only where a DICOM film is read

                found = identifiers(path, patient)
        except ImageError as exc:
            out.append(Decoded(error=str(exc)))
            continue
        out.append(Decoded(image, original, uri, found))
    return out


class Decoder:
    """Chunks decoded in this process (one worker) or on a pool of spawned processes, submitted ahead of
    the network so that decoding and inference overlap; `ahead` bounds the chunks held in memory."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.ahead = 2 * workers
        self._pool = None if workers <= 1 else ProcessPoolExecutor(
            max_workers=workers, mp_context=get_context("spawn"), initializer=watch_parent, initargs=(os.getpid(),))

    def submit(self, *args) -> Future:  # type: ignore[no-untyped-def]
        if self._pool is not None:
            return self._pool.submit(decode_chunk, *args)
        future: Future = Future()
        future.set_result(decode_chunk(*args))
        return future

    def close(self) -> None:
        """Stop the workers now: cancel what waits, end what runs (an error or an interruption)."""
        if self._pool is None:
            return
        processes = list((getattr(self._pool, "_processes", None) or {}).values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(timeout=5)

    def __enter__(self) -> "Decoder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
