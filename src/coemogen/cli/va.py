"""`coemogen va fit` (a taxonomy's valence/arousal anchors from data) and `coemogen va-head train`
(the valence/arousal judge: image features into two regression outputs)."""

from __future__ import annotations

import argparse


def add_to(sub: argparse._SubParsersAction) -> None:
    """Add the commands' parsers to `sub`."""
    va = sub.add_parser("va", help="valence/arousal anchors of a taxonomy").add_subparsers(
        dest="va_command", required=True
    )
    p = va.add_parser(
        "fit",
        help="fit each emotion's valence/arousal anchor and spread from rated data (or a V/A head's verdicts) "
        "and write them into a taxonomy file",
    )
    p.add_argument(
        "--dataset",
        required=True,
        help="images with per-image valence/arousal and emotion labels (CSV/JSONL, or an EmoSet-layout folder "
        "whose annotations carry them, e.g. a synthetic world); with --va-head, any emotion-labelled dataset",
    )
    p.add_argument("--out", required=True, help="the taxonomy file to write (JSON or YAML)")
    p.add_argument("--taxonomy", help="the taxonomy whose emotions to place (default: mikels)")
    p.add_argument("--scale", default="circumplex", help="the ratings' native scale: " + _scales() + ", or V0:V1,A0:A1")
    p.add_argument("--va-head", "--va_head", help="place the emotions by this V/A head's verdicts instead of ratings")
    p.set_defaults(func=run_va_fit)

    head = sub.add_parser("va-head", help="the valence/arousal judge (EmotiCrafter's form)").add_subparsers(
        dest="va_head_command", required=True
    )
    p = head.add_parser("train", help="fit a V/A head on a rated set (its train split; errors on its test split)")
    p.add_argument("--dataset", required=True, help="a rated set (CSV/JSONL with image, valence, arousal; or a world)")
    p.add_argument("--out", required=True)
    p.add_argument(
        "--features",
        default="clip:openai/clip-vit-large-patch14",
        help="clip:<model> (CLIP image features), or reference:<dataset> (the FID features of the networks a "
        "client registers for it: a synthetic world's independent judges)",
    )
    p.add_argument("--scale", default="circumplex", help="the ratings' native scale: " + _scales() + ", or V0:V1,A0:A1")
    p.add_argument("--seed", type=int, default=0, help="seed of the 10% hold-out when the set has no splits")
    p.set_defaults(func=run_va_head_train)


def _scales() -> str:
    from ..data.va import VA_SCALES

    return ", ".join(f"{name} (V {v[0]:g}..{v[1]:g}, A {a[0]:g}..{a[1]:g})" for name, (v, a) in VA_SCALES.items())


def run_va_fit(a: argparse.Namespace) -> None:
    import json
    from pathlib import Path

    from ..errors import CoEmoGenError
    from ..evaluation.va import VAHead, fit_anchors
    from ..io import write_text
    from ..taxonomy import Taxonomy

    taxonomy = Taxonomy.load(a.taxonomy)
    fitted, counts = fit_anchors(a.dataset, taxonomy, a.scale, VAHead(a.va_head) if a.va_head else None)
    out = Path(a.out)
    if out.suffix in {".yaml", ".yml"}:
        import yaml

        text = yaml.safe_dump(fitted.to_dict(), sort_keys=False)
    elif out.suffix == ".json":
        text = json.dumps(fitted.to_dict(), indent=1)
    else:
        raise CoEmoGenError(f"--out must be a .json or .yaml taxonomy file, not {out.name}")
    write_text(out, text)
    for emotion, valence, arousal, spread in fitted.anchors:
        print(
            f"{emotion:12s} valence {valence:+.2f}  arousal {arousal:+.2f}  spread {spread:.2f}  "
            f"({counts[emotion]} images)"
        )
    print(f"wrote {out}")


def run_va_head_train(a: argparse.Namespace) -> None:
    from ..evaluation.va import train_va_head

    config = train_va_head(a.dataset, a.out, a.features, a.scale, a.seed)
    for split, errors in config["errors"].items():
        print(
            f"{split}: V-Error {errors['v_error']:.3f}, A-Error {errors['a_error']:.3f}, "
            f"Spearman V {errors['v_spearman']:.3f}, A {errors['a_spearman']:.3f} "
            f"({config['num_images'][split]} images)"
        )
    print(f"wrote {a.out}")
