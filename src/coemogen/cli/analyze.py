"""`coemogen analyze timesteps`: when in the denoising the emotion enters."""

from __future__ import annotations

import argparse

from ..models.configs import DEFAULT_INFERENCE_STEPS


def add_to(sub: argparse._SubParsersAction) -> None:
    """Add the command's parser (and its sub-commands) to `sub`."""
    analyze = sub.add_parser("analyze", help="analyses of a trained run").add_subparsers(
        dest="analyze_command", required=True
    )
    p = analyze.add_parser("timesteps", help="when in the denoising does the emotion enter? (Emo-A against k)")
    p.add_argument("--model", help="run directory (default: the shipped synthetic-world run)")
    p.add_argument("--out", required=True, help="output folder (resumable: judged settings are kept)")
    p.add_argument("--num-images", "--num_images", type=int, default=8, help="images per emotion per setting")
    p.add_argument("--num_inference_steps", "--steps", type=int, default=DEFAULT_INFERENCE_STEPS)
    p.add_argument("--ks", type=int, nargs="+", help="window lengths k (default: 0, 3, 6, ... and T)")
    p.add_argument("--levels", nargs="+", choices=["all", "emotion", "group"], default=["all", "emotion", "group"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device")
    p.add_argument("--emotion-classifier", help="Emo-A judge for a real-data run (default: the world's judge)")
    p.add_argument("--emotion-clip", help="CLIP of a published head")
    p.set_defaults(func=run_analyze_timesteps)


def run_analyze_timesteps(a: argparse.Namespace) -> None:
    from ..analysis.timesteps import analyze_timesteps

    analyze_timesteps(
        a.model,
        a.out,
        a.num_images,
        a.num_inference_steps,
        a.ks,
        a.seed,
        a.device,
        tuple(a.levels),
        a.emotion_classifier,
        a.emotion_clip,
    )
    print(f"wrote {a.out}/timesteps.md, timesteps.png and strips/")
