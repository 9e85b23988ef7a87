"""GPU memory of one training step, computed without a GPU: what autograd keeps for the backward pass.

A training step's memory is the weights, their gradients and the optimiser's state (AdamW: two more
copies), plus every tensor autograd saves in the forward pass for the backward one. The saved tensors
are counted here with `torch.autograd.graph.saved_tensors_hooks` on the CPU (each storage once), on
one image at `--measure` px, float32 and under bfloat16 autocast (what `fit` uses on GPUs); they grow
with the pixel count, so one image at `--size` px saves (size / measure)^2 as much. The result is
arithmetic, not a measurement on a GPU: the CUDA allocator's caching and cuDNN's workspaces come on top,
so `--headroom` of the card is left for them.

    python benchmarks/gpu_memory.py --arch resnet50 --size 1024 --gpu-gib 24
"""

from __future__ import annotations

import argparse

import torch

from classifier.config import ModelConfig
from classifier.models import WeaklySupervisedNet


def saved_bytes(model: torch.nn.Module, size: int, bf16: bool) -> int:
    """Bytes of the distinct tensors autograd saves for one image's backward pass."""
    seen: dict[tuple[int, int], int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        seen[(storage.data_ptr(), storage.nbytes())] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(torch.randn(1, 3, size, size))
    del logits
    return sum(seen.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--transition", type=int, default=1024)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--measure", type=int, default=256, help="Image size the saved tensors are counted at.")
    parser.add_argument("--gpu-gib", type=float, default=24.0)
    parser.add_argument("--headroom", type=float, default=0.2, help="Share of the card left to the allocator.")
    args = parser.parse_args()
    model = WeaklySupervisedNet(ModelConfig(arch=args.arch, num_classes=14, transition_channels=args.transition,
                                            output_stride=32))
    model.train()
    weights = sum(p.numel() for p in model.parameters()) * 4
    fixed = 4 * weights  # weights, gradients, AdamW's two moments (float32)
    scale = (args.size / args.measure) ** 2
    budget = args.gpu_gib * 2 ** 30 * (1 - args.headroom) - fixed
    gib = 2 ** 30
    print(f"{args.arch} (transition {args.transition}), training at {args.size} px, computed (no GPU used):")
    print(f"  weights + gradients + AdamW state: {fixed / gib:.2f} GiB")
    for name, bf16 in (("float32", False), ("bfloat16 autocast", True)):
        per_image = saved_bytes(model, args.measure, bf16) * scale
        batch = int(budget // per_image)
        print(f"  {name}: {per_image / gib:.2f} GiB saved per image -> batch {batch} fits {args.gpu_gib:g} GiB "
              f"with {args.headroom:.0%} left for the allocator")


if __name__ == "__main__":
    main()
