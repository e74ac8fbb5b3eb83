"""The number format SAM2 computes in on each device: ``segmenter.precision`` resolved against what the hardware does
natively, and the autocast context that applies it.

- ``auto``: bfloat16 on a CUDA GPU (SAM2's own setting) and on a CPU whose instruction set multiplies bfloat16
  natively (``avx512_bf16`` or ``amx_bf16``, as torch reports them); float32 elsewhere, where bfloat16 would be
  emulated and slower than float32.
- ``bf16`` / ``fp32``: that format wherever it runs.

Matrix products and convolutions run in bfloat16 under ``torch.autocast``; normalisations, softmax and the mask
thresholds stay in float32. Masks then differ from float32 ones by rounding (mask IoU about 0.99 on random weights,
see BENCHMARKS.md).
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import Any, Literal

PrecisionSetting = Literal["auto", "bf16", "fp32"]
Precision = Literal["bf16", "fp32"]

EARLIER = {"cuda": "bf16", "cpu": "fp32"}
"""What every sam2flow version before ``segmenter.precision`` ran on each device type: the part-file digest names the
precision only where it differs from this, so part files of earlier runs stay valid under the same precision."""


@dataclass(frozen=True)
class CpuFeatures:
    """The CPU's native bfloat16 support, as torch (not /proc/cpuinfo) reports it."""

    avx512_bf16: bool
    amx_bf16: bool

    @property
    def native_bf16(self) -> bool:
        return self.avx512_bf16 or self.amx_bf16

    def describe(self) -> str:
        found = [name for name, on in (("amx_bf16", self.amx_bf16), ("avx512_bf16", self.avx512_bf16)) if on]
        return ", ".join(found) if found else "no native bf16"


@functools.lru_cache(maxsize=1)
def cpu_features() -> CpuFeatures:
    """Asks torch's CPU feature detection (cpuinfo), which also knows what the OS enabled (AMX needs OS support)."""
    import torch

    caps: dict[str, Any] = {}
    get = getattr(torch.cpu, "get_capabilities", None)
    if callable(get):
        caps = dict(get())
    avx = bool(caps.get("avx512_bf16", _call(torch.cpu, "_is_avx512_bf16_supported")))
    amx = bool(caps.get("amx_bf16", False)) or (not caps and _call(torch.cpu, "_is_amx_tile_supported"))
    return CpuFeatures(avx512_bf16=avx, amx_bf16=amx)


def _call(module: Any, name: str) -> bool:
    fn = getattr(module, name, None)
    return bool(fn()) if callable(fn) else False


def resolve(setting: PrecisionSetting, device: str) -> Precision:
    """The precision ``setting`` means on ``device`` (``cpu``, ``cuda``, ``cuda:N``)."""
    if setting != "auto":
        return setting
    if device.startswith("cuda"):
        return "bf16"
    return "bf16" if cpu_features().native_bf16 else "fp32"


def describe(setting: PrecisionSetting, device: str) -> str:
    """One line for logs: what runs on ``device`` and why."""
    chosen = resolve(setting, device)
    if device.startswith("cuda"):
        return f"{chosen} on {device}" + (" (auto)" if setting == "auto" else "")
    why = cpu_features().describe()
    return f"{chosen} on the CPU ({why}{'; auto' if setting == 'auto' else ''})"


def digest_token(setting: PrecisionSetting, devices: list[str]) -> str | None:
    """What the part-file digest adds for the precision on these devices: None where each device runs what earlier
    versions ran (bf16 on CUDA, fp32 on the CPU), so their part files stay valid."""
    odd = sorted({f"{_kind(d)}={resolve(setting, d)}" for d in devices if resolve(setting, d) != EARLIER[_kind(d)]})
    return ",".join(odd) or None


def _kind(device: str) -> str:
    return "cuda" if device.startswith("cuda") else "cpu"


def autocast(precision: Precision, device: str) -> contextlib.AbstractContextManager[Any]:
    """bfloat16 autocast on ``device`` for ``bf16``; nothing for ``fp32``."""
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(_kind(device), dtype=torch.bfloat16)
