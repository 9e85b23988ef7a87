"""`classifier export RUN --format onnx|torchscript -o FILE`: the run's network for another runtime,
with the preprocessing contract stored inside the file, so the model cannot travel without it.

The exported network takes what every film becomes in this toolkit and returns probabilities:
input `grey`, float32 (batch, 1, S, S) in [0, 1], the film's 8-bit decode (`images.decode`: DICOM
through its modality and VOI LUTs with MONOCHROME1 inverted, stretched to its own range, resized
bilinearly to S x S, rounded to 8 bits) divided by 255; output `probabilities`, float32
(batch, findings), one sigmoid per finding in the contract's order. Copying grey to three channels
and ImageNet's standardisation happen inside the network, so a runtime cannot get them wrong.

The contract (JSON: size, input and output, the normalisation applied inside, the finding names,
the run's operating points when `fit` recorded them, the run it came from) is stored as ONNX
`metadata_props` under `chestxray_toolkit.contract`, or as the TorchScript extra file
`contract.json`; the run's model card goes beside it (`chestxray_toolkit.model_card`,
`model_card.md`). `read_contract(FILE)` reads it back. After writing, the file is loaded again and
run against the checkpoint on a few inputs; the largest difference is reported.
"""

from __future__ import annotations

import importlib
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cxrcore.errors import InputError
from cxrcore.output import Outputs, exclusive

from . import __version__
from .data import MEAN, STD
from .model_card import CARD
from .runs import load_run

FORMATS = ("onnx", "torchscript")
CONTRACT_FORMAT = "chestxray-toolkit/export-1"
CONTRACT_KEY, CARD_KEY = "chestxray_toolkit.contract", "chestxray_toolkit.model_card"
CONTRACT_FILE = "contract.json"
POINTS = "operating_points.json"  # recorded by `fit` (operating_points.py)
PREPROCESSING = ("decode the film to grey (DICOM: modality LUT, VOI LUT or window, MONOCHROME1 inverted; "
                 "colour: luminance)", "stretch its own minimum..maximum to 0..255",
                 "resize to size x size, bilinear", "round to 8 bits", "divide by 255")
EXTRA = "pip install 'chestxray-toolkit[export]'"


class Exported(nn.Module):
    """grey (B, 1, S, S) in [0, 1] → probabilities (B, C): the run's network with its input standardisation
    and output sigmoid inside."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(MEAN, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, grey: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model((grey.expand(-1, 3, -1, -1) - self.mean) / self.std))


def export(run_dir: Path, fmt: str, output: Path) -> tuple[dict[str, Any], float | None]:
    """Write the run's network as `fmt` to `output` all at once, with its contract; return the contract and
    the largest difference between the written file's probabilities and the checkpoint's on 4 inputs
    (None where onnxruntime is not installed to run an ONNX file)."""
    if fmt not in FORMATS:
        raise InputError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    if fmt == "onnx":
        _require("onnx", "onnxscript")
    inputs = [p for p in run_dir.iterdir() if p.is_file()]  # every file of the run: never written over
    model, config, findings, origin = load_run(run_dir, torch.device("cpu"))
    wrapped = Exported(model).eval()
    contract = make_contract(run_dir, config.size, findings, origin)
    card = (run_dir / CARD).read_text(encoding="utf-8") if (run_dir / CARD).is_file() else None
    with Outputs([output], inputs) as outputs, exclusive(output):
        temporary = outputs.path(output)
        example = torch.rand(2, 1, config.size, config.size, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            (_onnx if fmt == "onnx" else _torchscript)(wrapped, example, temporary, contract, card)
            gap = _check(wrapped, temporary, fmt, config.size)
        outputs.commit()
    return contract, gap


def make_contract(run_dir: Path, size: int, findings: list[str], origin: dict[str, Any]) -> dict[str, Any]:
    """What a runtime must do before and after the network, and where the network came from."""
    return {
        "format": CONTRACT_FORMAT,
        "tool": f"chestxray-toolkit {__version__}",
        "run": {"folder": str(run_dir), **origin},
        "size": size,
        "input": {"name": "grey", "shape": ["batch", 1, size, size], "dtype": "float32", "range": [0.0, 1.0]},
        "preprocessing": list(PREPROCESSING),
        "normalisation": {"mean": list(MEAN), "std": list(STD),
                          "applied": "inside the network: grey copied to 3 channels, then (x - mean) / std"},
        "output": {"name": "probabilities", "shape": ["batch", len(findings)], "dtype": "float32",
                   "activation": "sigmoid, one per finding"},
        "findings": list(findings),
        "operating_points": _operating_points(run_dir, findings),
    }


def read_contract(path: Path) -> dict[str, Any]:
    """The contract stored in an exported ONNX or TorchScript file."""
    with path.open("rb") as fh:
        archive = fh.read(2) == b"PK"  # TorchScript files are ZIP archives
    if not archive:
        _require("onnx")
        import onnx

        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        if CONTRACT_KEY not in props:
            raise InputError(f"{path}: an ONNX model without a chestxray-toolkit contract")
        return json.loads(props[CONTRACT_KEY])
    files = {CONTRACT_FILE: ""}
    with _quiet():
        torch.jit.load(str(path), map_location="cpu", _extra_files=files)
    if not files[CONTRACT_FILE]:
        raise InputError(f"{path}: a TorchScript model without a chestxray-toolkit contract")
    return json.loads(files[CONTRACT_FILE])


def _operating_points(run_dir: Path, findings: list[str]) -> dict[str, float] | None:
    """Finding → threshold as `fit` recorded them; None for a run without them."""
    try:
        recorded = json.loads((run_dir / POINTS).read_text(encoding="utf-8"))["findings"]
        return {name: float(recorded[name]["threshold"]) for name in findings}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{run_dir / POINTS}: cannot be read ({exc.__class__.__name__}: {exc}); delete it to "
                         f"export without operating points") from None


def _onnx(wrapped: Exported, example: torch.Tensor, path: str, contract: dict, card: str | None) -> None:
    with _quiet():
        program = torch.onnx.export(wrapped, (example,), dynamo=True, verbose=False, input_names=["grey"],
                                    output_names=["probabilities"],
                                    dynamic_shapes={"grey": {0: torch.export.Dim("batch")}})
    program.model.metadata_props[CONTRACT_KEY] = json.dumps(contract)
    if card is not None:
        program.model.metadata_props[CARD_KEY] = card
    program.model.producer_name, program.model.producer_version = "chestxray-toolkit", __version__
    program.save(path)


def _torchscript(wrapped: Exported, example: torch.Tensor, path: str, contract: dict, card: str | None) -> None:
    with _quiet():
        traced = torch.jit.trace(wrapped, example)  # the size is fixed by the contract; the batch is free
        extra = {CONTRACT_FILE: json.dumps(contract), **({CARD: card} if card is not None else {})}
        torch.jit.save(traced, path, _extra_files=extra)


def _check(wrapped: Exported, path: str, fmt: str, size: int) -> float | None:
    """The largest difference between the written file and the checkpoint on 4 random inputs (None: no
    runtime to load an ONNX file with)."""
    grey = torch.rand(4, 1, size, size, generator=torch.Generator().manual_seed(1))
    expected = wrapped(grey).numpy()
    if fmt == "torchscript":
        with _quiet():
            got = torch.jit.load(path, map_location="cpu")(grey).numpy()
    elif not _importable("onnxruntime"):
        return None
    else:
        import onnxruntime

        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        got = session.run(None, {"grey": grey.numpy()})[0]
    return float(np.abs(got - expected).max())


def _require(*modules: str) -> None:
    missing = [m for m in modules if not _importable(m)]
    if missing:
        raise InputError(f"ONNX export needs {', '.join(missing)}, which this install lacks: {EXTRA}")


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


class _quiet(warnings.catch_warnings):
    """torch's notices while exporting (TorchScript's deprecation, the tracer's note that the input size
    is fixed, which the contract says), silenced for this block only."""

    def __enter__(self):  # type: ignore[no-untyped-def]
        out = super().__enter__()
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit.*deprecated")
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*torch\.jit.*deprecated")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        return out
