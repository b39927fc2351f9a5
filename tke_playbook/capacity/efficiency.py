"""How far a deployment is from the hardware's limit: model FLOPs utilisation (MFU).

An embedding request is one forward pass over its tokens: about ``2 x parameters`` FLOPs per token (attention adds
a little more at long lengths, left out as is usual for MFU). So ``MFU = tokens/s x 2 x params / (GPUs x dense bf16
peak)``. The peaks are spec-sheet values (:data:`tke_playbook.specs.hardware.PEAK_BF16_TFLOPS`); an H200 measured about
80% of its spec in a plain matmul (facts.md section 9), so an MFU of 0.5-0.6 is already close to the limit and a
few percent says the GPU mostly waits (small batches, one API server process, the client).

MFU is shown only against the peak of the hardware that served: pass a
:class:`~tke_playbook.capacity.hardware.ServedOn` (or a GPU name). On the local CPU server there is no MFU - no
CPU peak is measured or cited here - and the notes say "MFU: not applicable on CPU".
"""

from __future__ import annotations

import math

import pandas as pd

from ..errors import InvalidSpecError
from ..specs.catalog import get_model
from ..specs.hardware import get_gpu, peak_bf16_tflops
from .hardware import ServedOn


def flops_per_token(model) -> float:
    """``2 x parameters``: the forward-pass FLOPs of one token."""
    return 2.0 * get_model(model).params


def model_flops_utilisation(tokens_per_s: float, model, gpu, gpus: int = 1) -> float | None:
    """MFU of ``tokens_per_s`` for ``model`` on ``gpus`` x ``gpu``; None when the GPU's bf16 peak is unknown."""
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1:
        raise InvalidSpecError(f"gpus {gpus!r} must be a whole number of at least 1", field="gpus", value=gpus)
    peak = peak_bf16_tflops(gpu) if gpu else None
    if peak is None or tokens_per_s is None or not math.isfinite(float(tokens_per_s)):
        return None
    return float(tokens_per_s) * flops_per_token(model) / (gpus * peak * 1e12)


def _gpu_of(hardware, gpus: int) -> tuple[str | None, int]:
    """``(gpu name or None, gpus)`` from a ServedOn, a GPU name or None."""
    if isinstance(hardware, ServedOn):
        return hardware.gpu, hardware.gpus
    return hardware, gpus


def with_mfu(summary: pd.DataFrame, model, gpu=None, gpus: int = 1) -> pd.DataFrame:
    """A copy of a loadgen summary with ``tflops`` (model FLOPs delivered) beside ``tokens_per_s``, and ``mfu``
    when ``gpu`` (a ServedOn or a GPU name) is a GPU that served with a known bf16 peak - never on a CPU."""
    if not isinstance(summary, pd.DataFrame) or "tokens_per_s" not in summary:
        raise InvalidSpecError("the summary has no tokens_per_s column: pass a loadgen summary", field="summary",
                               value=list(getattr(summary, "columns", [])))
    gpu, gpus = _gpu_of(gpu, gpus)
    out = summary.copy()
    at = list(out.columns).index("tokens_per_s") + 1
    achieved = out["tokens_per_s"].astype(float) * flops_per_token(model) / 1e12
    out.insert(at, "tflops", achieved)
    peak = peak_bf16_tflops(gpu) if gpu else None
    if peak:
        out.insert(at + 1, "mfu", achieved / (gpus * peak))
    return out


def mfu_note(model, gpu=None, gpus: int = 1) -> str:
    """One sentence saying what the MFU column is measured against (``gpu``: a ServedOn or a GPU name)."""
    hardware = gpu
    gpu, gpus = _gpu_of(gpu, gpus)
    if not gpu:
        where = f" (the local server ran on {hardware.cpu}, {hardware.cores} cores)" \
            if isinstance(hardware, ServedOn) else ""
        return (f"MFU: not applicable on CPU{where}: MFU compares with a GPU's dense bf16 peak, and no CPU peak is "
                "measured or cited here. The TFLOP/s column shows the model FLOPs the server delivered.")
    peak = peak_bf16_tflops(gpu)
    name = get_gpu(gpu).name
    if peak is None:
        return f"{name} has no known dense bf16 peak: MFU cannot be computed."
    return (f"MFU = tokens/s x 2 x {get_model(model).params / 1e9:.2f} B params / ({gpus} x {peak:g} TFLOP/s, the "
            f"{name}'s dense bf16 spec-sheet peak).")
