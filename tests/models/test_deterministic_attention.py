"""seed_everything keeps scaled_dot_product_attention on its math kernel: with
``use_deterministic_algorithms(True, warn_only=True)`` the fused CUDA backward kernels (memory-efficient,
which BEATs/WavLM's float attn_mask selects, flash, cuDNN) stay non-deterministic and only warn.
The switches are process-global flags, so this is checked on CPU (docs/reliability.md). They also
turn off the CPU flash kernel (deterministic already, and faster), so a CPU run leaves them alone."""

from __future__ import annotations

import torch

from asdlib.utils import seed_everything


def test_seed_everything_disables_fused_sdpa_kernels_on_cuda_only() -> None:
    cuda = torch.backends.cuda
    saved = (cuda.mem_efficient_sdp_enabled(), cuda.flash_sdp_enabled(), cuda.cudnn_sdp_enabled())
    try:
        cuda.enable_mem_efficient_sdp(True)
        cuda.enable_flash_sdp(True)
        cuda.enable_cudnn_sdp(True)
        seed_everything(0, "cpu")
        assert cuda.mem_efficient_sdp_enabled() and cuda.flash_sdp_enabled() and cuda.cudnn_sdp_enabled()
        assert torch.are_deterministic_algorithms_enabled()
        seed_everything(0, "cuda:0")
        assert not cuda.mem_efficient_sdp_enabled()
        assert not cuda.flash_sdp_enabled() and not cuda.cudnn_sdp_enabled()
        assert cuda.math_sdp_enabled()
    finally:
        cuda.enable_mem_efficient_sdp(saved[0])
        cuda.enable_flash_sdp(saved[1])
        cuda.enable_cudnn_sdp(saved[2])
