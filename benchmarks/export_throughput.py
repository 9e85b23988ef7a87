"""Films/s of an exported ONNX model under onnxruntime on the CPU against the same network in torch, same run.

A run folder is made with a randomly initialised network of the chosen architecture (throughput does
not depend on the weights), exported with `classifier export --format onnx` as a user does, and both
are timed on the same random batches of grey films, taking turns batch by batch: torch (float32, eval,
no_grad, the threads torch chooses, or `--threads`) and onnxruntime's CPUExecutionProvider with as
many intra-op threads. It prints films/s of each, their ratio, and the largest difference between
their probabilities.

    python benchmarks/export_throughput.py --arch resnet50 --size 224 --batch 8 --batches 6
    python benchmarks/export_throughput.py --arch resnet18 --size 128 --trunk-stages 3 --transition 256
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from classifier.checkpoint import save_checkpoint
from classifier.config import ModelConfig, TrainConfig
from classifier.export import Exported
from classifier.models import WeaklySupervisedNet
from classifier.synthetic import FINDINGS


def make_run(folder: Path, args: argparse.Namespace) -> Exported:
    """A run folder holding a random network of the chosen shape; returns it wrapped as exported."""
    config = TrainConfig(model=ModelConfig(arch=args.arch, num_classes=len(FINDINGS), transition_channels=args.transition,
                                           trunk_stages=args.trunk_stages), size=args.size)
    torch.manual_seed(0)
    model = WeaklySupervisedNet(config.model).eval()
    config = replace(config, model=model.config)
    save_checkpoint(folder / "best.pt", model=model.state_dict(), epoch=1, best_auc=0.5, config=config.to_dict(),
                    findings=list(FINDINGS))
    return Exported(model).eval()


def rates(runners: list, batches: list[np.ndarray]) -> list[float]:
    """Films/s of each runner over `batches` after one warm-up batch each; the runners take turns batch by
    batch, so a machine whose load changes meanwhile slows both alike."""
    for run_batch in runners:
        run_batch(batches[0])
    seconds = [0.0] * len(runners)
    for batch in batches:
        for k, run_batch in enumerate(runners):
            started = time.perf_counter()
            run_batch(batch)
            seconds[k] += time.perf_counter() - started
    return [sum(len(b) for b in batches) / s for s in seconds]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="resnet50", choices=["resnet50", "resnet18", "densenet121"])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--transition", type=int, default=1024)
    parser.add_argument("--trunk-stages", type=int, default=4, choices=[3, 4])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    batches = [rng.random((args.batch, 1, args.size, args.size), dtype=np.float32) for _ in range(args.batches)]
    with tempfile.TemporaryDirectory() as tmp:
        run_dir, onnx_file = Path(tmp) / "run", Path(tmp) / "model.onnx"
        run_dir.mkdir()
        wrapped = make_run(run_dir, args)
        done = subprocess.run([sys.executable, "-m", "classifier", "export", str(run_dir), "--format", "onnx", "-o",
                               str(onnx_file)], capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(done.stderr)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = args.threads
        session = onnxruntime.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])

        def with_torch(batch: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return wrapped(torch.from_numpy(batch)).numpy()

        def with_onnxruntime(batch: np.ndarray) -> np.ndarray:
            return session.run(None, {"grey": batch})[0]

        gap = max(float(np.abs(with_torch(b) - with_onnxruntime(b)).max()) for b in batches[:2])
        torch_rate, ort_rate = rates([with_torch, with_onnxruntime], batches)
    print(f"{args.arch} at {args.size} px, batch {args.batch}, {args.threads} threads, "
          f"{args.batch * args.batches} films each (torch {torch.__version__}, onnxruntime {onnxruntime.__version__})")
    print(f"torch        {torch_rate:8.1f} films/s")
    print(f"onnxruntime  {ort_rate:8.1f} films/s   {ort_rate / torch_rate:.2f}x torch")
    print(f"largest probability difference: {gap:.1e}")


if __name__ == "__main__":
    main()
