"""`fit --init imagenet`: the trunk starts from torchvision's ImageNet weights, found through its
weights API (`get_model_weights(arch).DEFAULT`: the file name, URL and hash torchvision publishes).

The file is looked up where torchvision itself caches it, `$TORCH_HOME/hub/checkpoints` (by default
`~/.cache/torch/hub/checkpoints`), so weights any torchvision program downloaded are reused. Where
the file is missing it is downloaded there (checked against the hash in its name); where that fails
(no network, a proxy, a bad file), one line names the file, the folder to put it in and its URL.
What is loaded goes through the same checks as `--weights FILE` (runs.build_model).
"""

from __future__ import annotations

import re
import socket
import urllib.error
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import torch
import torchvision

from cxrcore.errors import InputError

TIMEOUT_S = 30  # a network that does not answer in this long is treated as absent


def imagenet_weights(arch: str, say: Callable[[str], None]) -> Path:
    """The cached file of `arch`'s default ImageNet weights, downloaded into the cache if missing."""
    weights = torchvision.models.get_model_weights(arch).DEFAULT
    name = Path(urlparse(weights.url).path).name
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    path = folder / name
    if path.is_file():
        say(f"{arch}: ImageNet weights {weights} from {path}")
        return path
    say(f"{arch}: downloading ImageNet weights {weights} into {folder}")
    found = re.search(r"-([a-f0-9]+)\.", name)
    previous = socket.getdefaulttimeout()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        socket.setdefaulttimeout(TIMEOUT_S)
        torch.hub.download_url_to_file(weights.url, str(path), hash_prefix=found.group(1) if found else None,
                                       progress=False)
    except (urllib.error.URLError, OSError, RuntimeError) as exc:  # RuntimeError: the hash does not match
        reason = getattr(exc, "reason", None) or exc
        raise InputError(f"--init imagenet: {name} is not in {folder} and cannot be downloaded here ({reason}); "
                         f"put that file there (from {weights.url}), or give --weights FILE") from None
    finally:
        socket.setdefaulttimeout(previous)
    return path
