"""Recipes people compare against, as named sets of `fit` options (a preset only sets options: any
option given on the command line wins, and the preset's name is recorded in the run's config).

- `chestxray8`: Wang et al. 2017: ResNet-50 at the paper's stride 32, a 1024-channel transition layer,
  LSE pooling (r = 10), the weighted cross-entropy, 224 px.
- `chexnet`: Rajpurkar et al. 2017: DenseNet-121 at 224 px with its own pooled features (no transition
  layer), plain binary cross-entropy, Adam at 1e-3 with the learning rate cut when the validation
  AUC stops improving, batch 16, random horizontal flips.
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "chestxray8": {"arch": "resnet50", "output_stride": "32", "transition_channels": 1024, "pool": "lse",
                   "lse_r": 10.0, "loss": "weighted", "size": 224},
    "chexnet": {"arch": "densenet121", "transition_channels": 0, "pool": "avg", "loss": "bce", "size": 224,
                "optimizer": "adam", "lr": 1e-3, "schedule": "plateau", "batch_size": 16, "augment": "flip"},
}
