"""Training images/s of `classifier fit` against a plain torchvision training loop, in the same run.

Both train the same network (`WeaklySupervisedNet`, same arch, transition and stride) on the same
generated images with the same batch size for two epochs; the second epoch's images/s is compared
(the first includes start-up). The plain loop is what one would write by hand: an `ImageFolder`-style
dataset decoding each PNG with PIL, torchvision transforms, a DataLoader, BCE and AdamW.
`classifier fit` runs as a user runs it (a subprocess); its images/s is read from its train_log.
Variant of fit: --channels-last. bfloat16 autocast is measured on a few training steps of the same
model in this process (on a CPU without bfloat16 units it is many times slower, too slow for whole
epochs). Each is kept as a default only where it helps.

    python benchmarks/fit_throughput.py --size 128 --images 256
    python benchmarks/fit_throughput.py --size 224 --images 512 --device cuda --loader-workers 8   # on a GPU
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from classifier.config import ModelConfig
from classifier.models import WeaklySupervisedNet
from classifier.synthetic import FINDINGS, generate
from reportminer.dataset import write_dataset


class PlainDataset(Dataset):
    def __init__(self, root: Path, frame: pd.DataFrame, size: int) -> None:
        self.paths = [root / p for p in frame["image_path"]]
        self.labels = torch.tensor(frame[list(FINDINGS)].to_numpy(np.float32))
        self.transform = v2.Compose([v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True), v2.Resize((size, size)),
                                     v2.RandomAffine(degrees=6, translate=(0.05, 0.05), scale=(0.92, 1.08)),
                                     v2.Lambda(lambda x: x.expand(3, -1, -1)),
                                     v2.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        with Image.open(self.paths[i]) as im:
            return self.transform(im.convert("L")), self.labels[i]


def plain_loop(root: Path, frame: pd.DataFrame, args: argparse.Namespace) -> float:
    device = torch.device(args.device)
    model = WeaklySupervisedNet(ModelConfig(arch=args.arch, num_classes=len(FINDINGS),
                                            transition_channels=args.transition, output_stride=args.stride)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    loader = DataLoader(PlainDataset(root, frame, args.size), batch_size=args.batch_size, shuffle=True, drop_last=True,
                        num_workers=args.loader_workers)
    rate = 0.0
    for _ in range(2):
        seen, start = 0, time.perf_counter()
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            loss = loss_fn(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seen += len(images)
        if device.type == "cuda":
            torch.cuda.synchronize()
        rate = seen / (time.perf_counter() - start)
    return rate


def step_rate(args: argparse.Namespace, bf16: bool, steps: int = 3) -> float:
    """Images/s of a few forward+backward steps on random data, with or without CPU bf16 autocast."""
    torch.manual_seed(0)
    model = WeaklySupervisedNet(ModelConfig(arch=args.arch, num_classes=len(FINDINGS),
                                            transition_channels=args.transition, output_stride=args.stride))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images = torch.randn(args.batch_size, 3, args.size, args.size)
    labels = torch.randint(0, 2, (args.batch_size, len(FINDINGS))).float()
    start = None
    for step in range(steps + 1):
        if step == 1:
            start = time.perf_counter()  # the first step warms up
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(images)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return steps * args.batch_size / (time.perf_counter() - start)


def fit_rate(labels: Path, run: Path, args: argparse.Namespace, extra: list[str]) -> float:
    command = [sys.executable, "-m", "classifier.cli", "fit", str(labels), "-o", str(run), "--arch", args.arch, "--size", str(args.size),
               "--epochs", "2", "--batch-size", str(args.batch_size), "--transition", str(args.transition),
               "--output-stride", str(args.stride), "--device", args.device,
               "--loader-workers", str(args.loader_workers), *extra]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        sys.exit(done.stderr)
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    return log[-1]["images_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--transition", type=int, default=256)
    parser.add_argument("--stride", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--loader-workers", type=int, default=0, help="DataLoader workers, for both loops.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate(root, args.images, size=args.size, seed=0)
        truth = pd.read_csv(root / "truth.csv")
        frame = truth.assign(report_id=None, image_path="images/" + truth["image_id"], split="train")
        columns = list(FINDINGS) + ["No_Finding"]
        frame["No_Finding"] = (frame[list(FINDINGS)].sum(axis=1) == 0).astype(int)
        write_dataset(frame, root / "labels.parquet", columns, {"label_columns": columns, "no_finding": "No_Finding"})
        print(f"{args.images} generated images at {args.size} px, {args.arch} (stride {args.stride}, transition "
              f"{args.transition}), batch {args.batch_size}, device {args.device}, {torch.get_num_threads()} threads")
        results = {"plain torchvision loop": plain_loop(root, frame, args)}
        variants = {"classifier fit": [], "classifier fit --channels-last": ["--channels-last"]}
        for name, extra in variants.items():
            results[name] = fit_rate(root / "labels.parquet", root / name.replace(" ", "_"), args, extra)
        for name, rate in results.items():
            print(f"{name:<34} {rate:8.1f} images/s")
        if args.device == "cpu":
            plain, bf16 = step_rate(args, False), step_rate(args, True)
            print(f"training steps, float32 vs bfloat16 autocast: {plain:.1f} vs {bf16:.1f} images/s ({bf16 / plain:.2f}x)")
        ratio = results["classifier fit"] / results["plain torchvision loop"]
        print(f"ratio classifier fit / plain loop: {ratio:.2f}x (target >= 0.9)")


if __name__ == "__main__":
    main()
