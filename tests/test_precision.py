"""SAM2's precision (`sam2flow.models.precision`) and the speed-ups that keep what it computes
(`sam2flow.models.speedups`): what ``auto`` resolves to, what digests name, and that the faster paths compute the
same values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sam2flow.config import ConfigError, load_config
from sam2flow.io.checkpoints import ResolvedCheckpoint
from sam2flow.models import precision
from sam2flow.models.precision import CpuFeatures, digest_token, resolve
from sam2flow.models.speedups import (
    Bf16CpuAttention,
    blocked_attention,
    cache_position_embedding,
    project_values_late,
)
from sam2flow.stages.prepare import part_digest
from tests.synth import Square, write_clip

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cpu(monkeypatch: pytest.MonkeyPatch) -> dict[str, CpuFeatures]:
    """Set what the CPU is said to support: ``cpu["now"] = CpuFeatures(...)``."""
    state = {"now": CpuFeatures(avx512_bf16=False, amx_bf16=False)}
    monkeypatch.setattr(precision, "cpu_features", lambda: state["now"])
    return state


def test_auto_is_bf16_on_gpus_and_on_cpus_that_multiply_bf16_natively(cpu: dict[str, CpuFeatures]) -> None:
    """``auto``: bf16 on CUDA and on CPUs with avx512_bf16 or amx_bf16, fp32 on other CPUs; explicit settings hold."""
    assert resolve("auto", "cpu") == "fp32", "no native bf16: emulated bf16 is slower than fp32"
    assert resolve("auto", "cuda:1") == "bf16" and resolve("fp32", "cuda") == "fp32"
    cpu["now"] = CpuFeatures(avx512_bf16=True, amx_bf16=False)
    assert resolve("auto", "cpu") == "bf16" and resolve("fp32", "cpu") == "fp32"
    cpu["now"] = CpuFeatures(avx512_bf16=False, amx_bf16=True)
    assert resolve("auto", "cpu") == "bf16" and "amx_bf16" in precision.describe("auto", "cpu")


def test_torch_reports_what_proc_cpuinfo_lists() -> None:
    """The detection asks torch; on Linux it agrees with the kernel's flags."""
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags |= set(line.split(":", 1)[1].split())
    found = precision.cpu_features()
    assert found.avx512_bf16 == ("avx512_bf16" in flags)
    assert found.amx_bf16 <= ("amx_bf16" in flags)  # the OS must also enable AMX for torch to report it


def test_digests_name_the_precision_only_where_earlier_versions_ran_another(cpu: dict[str, CpuFeatures]) -> None:
    """Part files of earlier runs (bf16 on CUDA, fp32 on the CPU) keep their folder; another precision names a new
    one, so a run never mixes parts of two precisions."""
    assert digest_token("auto", ["cpu"]) is None and digest_token("auto", ["cuda:0", "cuda:1"]) is None
    assert digest_token("bf16", ["cpu"]) == "cpu=bf16" and digest_token("fp32", ["cuda:0", "cpu"]) == "cuda=fp32"
    cpu["now"] = CpuFeatures(avx512_bf16=True, amx_bf16=False)
    assert digest_token("auto", ["cpu", "cuda:0"]) == "cpu=bf16"
    cfg = load_config(ROOT / "configs" / "smoke.yaml")
    sam2 = ResolvedCheckpoint("random:sam2.1_hiera_tiny", Path("/x/s.pt"), None, True, "a" * 64, True)
    earlier = part_digest(cfg, sam2, None)
    assert part_digest(cfg, sam2, None, precision=None) == earlier
    assert part_digest(cfg, sam2, None, precision="cpu=bf16") != earlier


def test_precision_setting_is_checked() -> None:
    """An unknown precision is refused naming the key; the setting itself is not in the config digest."""
    with pytest.raises(ConfigError, match=r"segmenter\.precision"):
        load_config(None, ["segmenter.precision=fp16"])
    assert load_config(None, ["segmenter.precision=bf16"]).digest() == load_config(None).digest()


@pytest.mark.parametrize("shape", [(1, 1, 4096, 64, 1100), (2, 4, 2048, 32, 2100)])
def test_blocked_attention_computes_what_the_fused_kernel_does(shape: tuple[int, ...]) -> None:
    """The blocked attention equals torch's fused kernel in float32 and differs by rounding in bfloat16; inside
    `Bf16CpuAttention` large bf16 attentions take it and small ones keep the fused kernel."""
    b, h, n, d, m = shape
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(b, h, x, d, generator=gen) for x in (n, m, m))
    with torch.inference_mode():
        fused = F.scaled_dot_product_attention(q, k, v)
        assert torch.allclose(blocked_attention(q, k, v), fused, atol=2e-5), "float32: the same maths"
        half = blocked_attention(q.bfloat16(), k.bfloat16(), v.bfloat16())
        assert half.dtype == torch.bfloat16
        assert float((half.float() - fused).norm() / fused.norm()) < 0.01, "bfloat16: rounding only"
        with Bf16CpuAttention():
            routed = F.scaled_dot_product_attention(q.bfloat16(), k.bfloat16(), v.bfloat16())
            small = F.scaled_dot_product_attention(q[..., :64, :], k[..., :64, :], v[..., :64, :])
        assert torch.equal(routed, half), "large bfloat16 attention goes through the blocked path"
        assert torch.equal(small, F.scaled_dot_product_attention(q[..., :64, :], k[..., :64, :], v[..., :64, :]))


@pytest.fixture(scope="module")
def model_256() -> Any:
    """SAM2.1 tiny built from its real config for 256 px, seeded random weights (a fresh one per test module)."""
    from sam2.build_sam import build_sam2

    from sam2flow.models.segmenter import image_size_overrides

    torch.manual_seed(0)
    return build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", None, device="cpu", mode="eval",
                      hydra_overrides_extra=image_size_overrides(256), apply_postprocessing=False)  # fmt: skip


def test_cached_position_embedding_is_the_same_tensor_the_encoder_computes(model_256: Any) -> None:
    """Hiera's position embedding, cached per size, is the tensor it computes, and the features do not change."""
    trunk = model_256.image_encoder.trunk
    image = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        before = model_256.image_encoder(image)["vision_features"]
        expected = trunk._get_pos_embed((64, 64))
        cache_position_embedding(model_256)
        assert torch.equal(trunk._get_pos_embed((64, 64)), expected)
        assert trunk._get_pos_embed((64, 64)) is trunk._get_pos_embed((64, 64)), "computed once"
        assert torch.equal(model_256.image_encoder(image)["vision_features"], before)


def test_late_value_projection_is_the_same_linear_map(model_256: Any) -> None:
    """Memory attention with its cross-attentions' value projection moved after the attention gives the same output
    (float32, to rounding), with the narrow values going through the blocked path in bfloat16 too."""
    import copy

    gen = torch.Generator().manual_seed(2)
    tokens, batch = 16 * 16, 3
    curr, curr_pos = torch.randn(tokens, batch, 256, generator=gen), torch.randn(tokens, batch, 256, generator=gen)
    memory = torch.randn(4 * tokens + 16, batch, 64, generator=gen)
    memory_pos = torch.randn(4 * tokens + 16, batch, 64, generator=gen)

    def run(model: Any) -> torch.Tensor:
        with torch.inference_mode():
            return model.memory_attention(curr=[curr], curr_pos=[curr_pos], memory=memory, memory_pos=memory_pos,
                                          num_obj_ptr_tokens=16)  # fmt: skip

    late = copy.deepcopy(model_256)
    assert project_values_late(late) == 4, "one cross-attention per memory-attention layer"
    reference = run(model_256)
    assert torch.allclose(run(late), reference, atol=1e-4)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16), Bf16CpuAttention():
        half = late.memory_attention(curr=[curr], curr_pos=[curr_pos], memory=memory, memory_pos=memory_pos,
                                     num_obj_ptr_tokens=16)  # fmt: skip
    assert float((half.float() - reference).norm() / reference.norm()) < 0.02


@pytest.mark.slow
def test_bf16_segmenter_tracks_like_fp32(tmp_path: Path) -> None:
    """The same clip and box in bf16 and in fp32: bf16 autocast is on only in the bf16 segmenter, and the masks
    agree to rounding (random weights at 256 px)."""
    from sam2flow.core.types import LocalObjId, ObjectPrompt
    from sam2flow.models import weights
    from sam2flow.models.segmenter import Sam2Segmenter

    clip = write_clip(tmp_path / "c.mp4", 8, squares=(Square((230, 40, 40), y=60, x0=40, speed=3.0, size=60),))
    frames = tmp_path / "frames"
    frames.mkdir()
    import subprocess

    subprocess.run(["ffmpeg", "-v", "error", "-i", str(clip), "-q:v", "2", "-start_number", "0",
                    str(frames / "%05d.jpg")], check=True)  # fmt: skip
    ckpt = weights.resolve("random:sam2.1_hiera_tiny", "sam2")
    masks = {}
    for p in ("fp32", "bf16"):
        seg = Sam2Segmenter(ckpt, "cpu", image_size=256, precision=p)
        assert seg.precision == p
        with seg.session(frames) as s:
            assert torch.is_autocast_enabled("cpu") == (p == "bf16")
            s.add(ObjectPrompt(LocalObjId(1), 0, -1, "object", box=(40.0, 60.0, 100.0, 120.0)))
            masks[p] = np.stack([fm.masks[0] if fm.masks.shape[0] else np.zeros((240, 320), bool)
                                 for fm in s.propagate(0, 7)])  # fmt: skip
    inter = (masks["fp32"] & masks["bf16"]).sum(axis=(1, 2))
    union = (masks["fp32"] | masks["bf16"]).sum(axis=(1, 2))
    assert union.min() > 0 and (inter / union).mean() > 0.9, inter / union


def test_each_step_of_a_generator_runs_in_the_precision_on_whatever_thread_advances_it() -> None:
    """The studio streams Track's masks from a generator that the web server advances from pool threads: each step
    gets bf16 autocast, the attention mode and inference mode on its own thread, and leaves none behind."""
    import threading

    from sam2flow.models import weights
    from sam2flow.models.segmenter import Sam2Segmenter

    seg = Sam2Segmenter(weights.resolve("random:sam2.1_hiera_tiny", "sam2"), "cpu", image_size=256, precision="bf16")
    seen: list[tuple[str, bool, bool]] = []

    def steps() -> Any:
        for _ in range(3):
            here = threading.current_thread().name
            seen.append((here, torch.is_autocast_enabled("cpu"), torch.is_inference_mode_enabled()))
            yield len(seen)

    items = seg.stepped(steps())
    for i in range(3):
        worker = threading.Thread(target=lambda: next(items), name=f"pool-{i}")
        worker.start()
        worker.join()
    assert len({t for t, _, _ in seen}) == 3 and all(a and i for _, a, i in seen), seen
    assert not torch.is_autocast_enabled("cpu") and not torch.is_inference_mode_enabled()
