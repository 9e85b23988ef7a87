"""Images/s delivered to the training loop from a prepared store against decoding the PNGs, same run.

The 24 real 1,024-pixel NIH films in ../shared/data/nih-images-small/mrdchry_first24 are repeated to
`--rows` rows (each row its own image id, as a real archive of that many films). Measured here:

1. `classifier prepare` on those rows at `--size` (a subprocess, as a user runs it): images/s and the
   store's bytes per image;
2. the batches `fit` reads (its own dataset and collate, DataLoader of batch 32 with `--loader-workers`
   workers: 8-bit images) from the PNG files and from the store: images/s and the ratio store / files;
3. what `fit` then does to a batch before the network (`model_input`: to float, augmentation, 3
   channels, ImageNet standardisation) here on the CPU, without and with the default augmentation
   (on a GPU this runs on the device).

The file side decodes only `--file-images` rows (decoding is the slow part being measured); the store
side reads every row.

    python benchmarks/store_throughput.py --rows 3000 --size 512
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader

from classifier.data import ImageDataset, collate, model_input, prepare

FILMS = Path(__file__).resolve().parents[2] / "shared" / "data" / "nih-images-small" / "mrdchry_first24"


def labels_for(folder: Path, rows: int) -> Path:
    """labels.parquet of `rows` rows cycling over the 24 films, every row its own image and patient."""
    films = sorted(FILMS.glob("*.png"))
    frame = pd.DataFrame({"image_id": [f"r{k:06d}_{films[k % len(films)].name}" for k in range(rows)],
                          "image_path": [str(films[k % len(films)]) for k in range(rows)],
                          "patient_id": [f"p{k}" for k in range(rows)], "report_id": [f"r{k}" for k in range(rows)],
                          "split": "train", "Effusion": np.int8(0)})
    path = folder / "labels.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    return path


def delivered(dataset: ImageDataset, workers: int, count: int) -> float:
    """Images/s of batches of 32 drawn from the first `count` rows, as the training loop receives them."""
    subset = torch.utils.data.Subset(dataset, range(min(count, len(dataset))))
    loader = DataLoader(subset, batch_size=32, num_workers=workers, collate_fn=collate,
                        persistent_workers=False)
    started, seen = time.perf_counter(), 0
    for batch, errors in loader:
        assert not errors, errors
        seen += len(batch[0])
    return seen / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--file-images", type=int, default=192, help="Rows decoded from the PNGs.")
    parser.add_argument("--loader-workers", type=int, default=2)
    parser.add_argument("--work", type=Path, help="Folder to work in (default: a temporary one).")
    args = parser.parse_args()
    if not FILMS.is_dir():
        sys.exit(f"{FILMS} not found: this benchmark reads the shared NIH films")
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        labels, store = labels_for(work, args.rows), work / "store"
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "classifier", "prepare", str(labels), "--size", str(args.size),
                               "-o", str(store), "--workers", str(args.loader_workers)], capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if done.returncode:
            sys.exit(done.stderr.strip().splitlines()[-1])
        bytes_per_image = (store / "images.u8").stat().st_size / args.rows
        print(f"prepare: {args.rows} films of 1024 px at {args.size} px with {args.loader_workers} workers in "
              f"{seconds:.1f} s = {args.rows / seconds:.0f} images/s (start-up included); "
              f"{bytes_per_image:,.0f} bytes per image ({bytes_per_image / 2 ** 20:.2f} MiB)")
        files, stored = prepare(labels, None, 0), prepare(labels, None, 0, store)
        rows = np.arange(args.rows)
        from_files = delivered(ImageDataset.of(files, rows, args.size), args.loader_workers, args.file_images)
        from_store = delivered(ImageDataset.of(stored, rows, args.size), args.loader_workers, args.rows)
        print(f"batches delivered to the training loop at {args.size} px, {args.loader_workers} loader workers: "
              f"PNG files {from_files:.1f} images/s, store {from_store:.1f} images/s = {from_store / from_files:.1f}x")
        batch = torch.stack([torch.from_numpy(stored.store.image(k)) for k in range(32)])
        for augment in ("none", "affine"):
            started, rounds = time.perf_counter(), 4
            for _ in range(rounds):
                model_input(batch, torch.device("cpu"), augment=augment, positions=torch.arange(32))
            rate = 32 * rounds / (time.perf_counter() - started)
            print(f"model_input on this CPU ({torch.get_num_threads()} threads), augmentation {augment}: {rate:.0f} images/s")

if __name__ == "__main__":
    main()
