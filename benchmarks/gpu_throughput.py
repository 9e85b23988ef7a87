"""Training images/s on GPUs: is the GPU waiting for data? One command, under 10 minutes on one node.

For ResNet-50 (the paper's network: transition 1024, LSE) and DenseNet-121 (CheXNet's head) at 224,
512 and 1,024 px:

- model only: training steps (forward, backward, AdamW) on a batch already on the device, float32
  and bfloat16 autocast, channels_last: the most the GPU can take;
- full loop: `classifier fit --store` as a user runs it (fit's GPU defaults: bfloat16 autocast,
  channels_last), from a store of the 24 real NIH films repeated to `--rows` rows, on one GPU and,
  where the node has more, on all of them through torchrun: images/s of the second epoch.

full loop / model only near 1 means the GPU is kept busy; well below, it waits for data (raise
`--loader-workers`). Nothing is downloaded; weights are random (speed does not depend on them).

    python benchmarks/gpu_throughput.py                 # the whole table
    python benchmarks/gpu_throughput.py --quick         # 224 px only, to check the set-up
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from classifier.config import ModelConfig
from classifier.models import WeaklySupervisedNet
from store_throughput import labels_for

BATCH = {224: 64, 512: 16, 1024: 4}  # per GPU; 1,024-px ResNet-50 at 4 fits far below 24 GB (docs/classifier.md)
HEADS = {"resnet50": {"transition_channels": 1024, "output_stride": 32},
         "densenet121": {"transition_channels": 0, "output_stride": 32}}


def model_only(arch: str, size: int, bf16: bool, steps: int) -> float:
    """Images/s of training steps on one device batch, after three warm-up steps."""
    model = WeaklySupervisedNet(ModelConfig(arch=arch, num_classes=14, **HEADS[arch])).cuda()
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    images = torch.randn(BATCH[size], 3, size, size, device="cuda").contiguous(memory_format=torch.channels_last)
    targets = (torch.rand(BATCH[size], 14, device="cuda") < 0.1).float()
    for n in range(steps + 3):
        if n == 3:
            torch.cuda.synchronize()
            started = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            logits = model(images)
        torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), targets).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    return BATCH[size] * steps / (time.perf_counter() - started)


def full_loop(arch: str, size: int, labels: Path, store: Path, gpus: int, work: Path, workers: int) -> float:
    """Images/s of fit's second epoch with `gpus` processes (global batch = per-GPU batch x gpus)."""
    run = work / f"run_{arch}_{size}_{gpus}"
    fit = ["-m", "classifier", "fit", str(labels), "--store", str(store), "-o", str(run), "--arch", arch,
           "--size", str(size), "--epochs", "2", "--batch-size", str(BATCH[size] * gpus), "--loader-workers",
           str(workers), "--transition", str(HEADS[arch]["transition_channels"]), "--output-stride", "32"]
    launch = [sys.executable] + (["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(gpus)]
                                 if gpus > 1 else []) + fit
    done = subprocess.run(launch, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"fit failed: {done.stderr.strip().splitlines()[-1]}")
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    return log[-1]["images_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1200, help="Store rows (films) per size.")
    parser.add_argument("--steps", type=int, default=20, help="Timed model-only steps.")
    parser.add_argument("--loader-workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--quick", action="store_true", help="224 px only.")
    parser.add_argument("--work", type=Path, help="Folder to work in (default: a temporary one).")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA device: this benchmark measures GPUs")
    gpus = torch.cuda.device_count()
    sizes = [224] if args.quick else [224, 512, 1024]
    print(f"{torch.cuda.get_device_name(0)} x {gpus}, torch {torch.__version__}")
    print("| arch | px | batch/GPU | model fp32 | model bf16 | fit, 1 GPU | fit / model bf16 |"
          + (f" fit, {gpus} GPUs | scaling |" if gpus > 1 else ""))
    print("|---|---|---|---|---|---|---|" + ("---|---|" if gpus > 1 else ""))
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        labels = labels_for(work, args.rows)
        for size in sizes:
            store = work / f"store_{size}"
            made = subprocess.run([sys.executable, "-m", "classifier", "prepare", str(labels), "--size", str(size),
                                   "-o", str(store), "--workers", str(os.cpu_count() or 1)], capture_output=True, text=True)
            if made.returncode:
                sys.exit(f"prepare failed: {made.stderr.strip().splitlines()[-1]}")
            for arch in HEADS:
                fp32, bf16 = model_only(arch, size, False, args.steps), model_only(arch, size, True, args.steps)
                one = full_loop(arch, size, labels, store, 1, work, args.loader_workers)
                line = f"| {arch} | {size} | {BATCH[size]} | {fp32:.0f} | {bf16:.0f} | {one:.0f} | {one / bf16:.2f} |"
                if gpus > 1:
                    every = full_loop(arch, size, labels, store, gpus, work, args.loader_workers)
                    line += f" {every:.0f} | {every / one:.2f}x |"
                print(line, flush=True)


if __name__ == "__main__":
    main()
