"""Write a small random-init BEATs or EAT checkpoint in its official release format.

Recipes, benchmarks and tests use it in place of a downloaded model: the result is read by exactly
the code path of a real checkpoint (``upstream: {name: beats|eat, path: <out>}``). BEATs: one
``torch.save({"cfg", "model"})`` file. EAT: a Hugging Face directory (config.json +
model.safetensors) or a fairseq ``.pt`` file (``--eat_format fairseq``; loads without
``allow_unsafe_pickle`` since it pickles plain containers only). The 16x16 patches and 128 mel bins
stay as in the releases, so only the widths and depth shrink.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from asdlib.utils import run_main, setup_logging

log = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--name", choices=("beats", "eat"), required=True, help="upstream family")
    p.add_argument("--out", type=Path, required=True,
                   help="BEATs / fairseq EAT: file to write; Hugging Face EAT: directory to write")
    p.add_argument("--eat_format", choices=("hf", "fairseq"), default="hf", help="EAT release format")
    p.add_argument("--seed", type=int, default=0, help="weights depend only on the seed and sizes")
    p.add_argument("--layers", type=int, default=2, help="transformer blocks")
    p.add_argument("--dim", type=int, default=64, help="hidden size")
    p.add_argument("--ffn_dim", type=int, default=128, help="feed-forward inner size")
    p.add_argument("--heads", type=int, default=4, help="attention heads")
    p.add_argument("--patch_dim", type=int, default=32, help="BEATs patch-embedding channels (512 in the release)")
    p.add_argument("--conv_pos", type=int, default=16, help="BEATs positional convolution kernel (128 in the release)")
    p.add_argument("--conv_pos_groups", type=int, default=4, help="BEATs positional convolution groups")
    p.add_argument("--max_time_patches", type=int, default=128, help="EAT positional table length in 16-frame steps")
    p.add_argument("--verbose", type=int, default=1)
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    if args.name == "beats":
        from asdlib.synth.checkpoints import save_random_beats

        cfg = save_random_beats(
            args.out, seed=args.seed, encoder_layers=args.layers, encoder_embed_dim=args.dim,
            encoder_ffn_embed_dim=args.ffn_dim, encoder_attention_heads=args.heads, embed_dim=args.patch_dim,
            conv_pos=args.conv_pos, conv_pos_groups=args.conv_pos_groups, relative_position_embedding=True,
            gru_rel_pos=True, deep_norm=True, num_buckets=320, max_distance=800, dropout=0.0,
            attention_dropout=0.0, layer_wise_gradient_decay_ratio=0.6,
        )
    else:
        from asdlib.synth.checkpoints import save_random_eat

        cfg = save_random_eat(
            args.out, args.eat_format, seed=args.seed, embed_dim=args.dim, depth=args.layers, num_heads=args.heads,
            mlp_ratio=args.ffn_dim / args.dim, max_length=args.max_time_patches,
        )
    log.info("wrote random-init %s checkpoint (seed %d, %s) to %s", args.name, args.seed, cfg, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
