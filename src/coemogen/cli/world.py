"""`coemogen world`: build the synthetic world, its pocket models and judges, probe and draw it."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import CoEmoGenError


def add_to(sub: argparse._SubParsersAction) -> None:
    """Add the command's parser (and its sub-commands) to `sub`."""
    world = sub.add_parser("world", help="the built-in synthetic world").add_subparsers(
        dest="world_command", required=True
    )
    p = world.add_parser("build", help="render an EmoSet-layout emotional dataset")
    p.add_argument("--out", required=True)
    p.add_argument("--images-per-emotion", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--content-noise", type=float, default=0.2)
    p.add_argument("--corpus", type=int, default=0, help="also write a neutral corpus of this many images")
    p.add_argument("--style", choices=["photo", "art"], default="photo", help="art: the same scenes as paintings")
    p.add_argument("--taxonomy", help="whose emotions to render: mikels (default), emoart, or a JSON/YAML file")
    p.add_argument(
        "--content",
        choices=["objects", "narrative"],
        default="objects",
        help="objects: per-emotion scenes and objects; narrative: emotions carried by a person-entity relation "
        "(docs/world-narrative.md)",
    )
    p.add_argument(
        "--relation-noise", type=float, default=None, help="narrative only: share of relations from any emotion (0.1)"
    )
    p.set_defaults(func=run_world_build)
    p = world.add_parser("probe", help="narrative world: emotion accuracy from the relation against the attribute bag")
    p.add_argument("world", help="a world built with --content narrative")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="also write the report as JSON here")
    p.set_defaults(func=run_world_probe)
    p = world.add_parser(
        "probe-sensitivity", help="narrative world: the probe on one world per variant of its noise rates"
    )
    p.add_argument("--out", required=True, help="folder of the variant worlds")
    p.add_argument("--images-per-emotion", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_world_probe_sensitivity)
    p = world.add_parser("sheet", help="narrative world: a labelled PNG sheet of every relation, or of a built world")
    p.add_argument("--out", required=True, help="the PNG to write")
    p.add_argument("--world", help="a built narrative world: its first images per emotion (default: every relation)")
    p.add_argument("--seed", type=int, default=0, help="the relation sheet's scenes")
    p.set_defaults(func=run_world_sheet)
    p = world.add_parser("pocket", help="retrain the pocket CLIP and Stable Diffusion models")
    p.add_argument("--out", required=True)
    p.add_argument("--corpus-size", type=int, default=6000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--content",
        choices=["objects", "narrative"],
        default="objects",
        help="narrative: CLIP trained on neutral relational descriptions, the U-Net fine-tuned from the objects "
        "world's (resumable: re-run the same command)",
    )
    p.add_argument("--clip-steps", type=int, help="narrative only (default 1200)")
    p.add_argument("--unet-steps", type=int, help="narrative only (default 1500)")
    p.set_defaults(func=run_world_pocket)
    p = world.add_parser("judges", help="retrain the world's independent evaluators")
    p.add_argument("--out", required=True)
    p.add_argument("--test-world", required=True, help="a built world whose test split measures accuracy")
    p.add_argument("--images-per-emotion", type=int, default=600)
    p.add_argument("--seed", type=int, default=100)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--style", choices=["photo", "art"], default="photo", help="the style of the judges' world")
    p.add_argument("--taxonomy", help="the emotions the emotion judge tells apart (default: mikels)")
    p.add_argument(
        "--content",
        choices=["objects", "narrative"],
        default="objects",
        help="narrative: judges of the narrative world (emotion; scene, object and relation heads); resumable",
    )
    p.set_defaults(func=run_world_judges)


def run_world_build(a: argparse.Namespace) -> None:
    from ..taxonomy import Taxonomy
    from ..world.dataset import build_world, write_corpus

    taxonomy = Taxonomy.load(a.taxonomy)
    if getattr(a, "content", "objects") == "narrative":
        from ..world.narrative import RELATION_NOISE, build_narrative_world, write_narrative_corpus

        if a.style != "photo":
            raise CoEmoGenError("the narrative world has the photo style only")
        noise = RELATION_NOISE if a.relation_noise is None else a.relation_noise
        path = build_narrative_world(a.out, a.images_per_emotion, a.seed, a.size, noise, taxonomy)
        if a.corpus:
            write_narrative_corpus(Path(a.out) / "neutral_corpus", a.corpus, a.seed + 1, a.size)
        print(f"wrote the narrative world to {path}")
        return
    path = build_world(a.out, a.images_per_emotion, a.seed, a.size, a.content_noise, a.style, taxonomy)
    if a.corpus:
        write_corpus(Path(a.out) / "neutral_corpus", a.corpus, a.seed + 1, a.size)
    print(f"wrote the synthetic world to {path}")


def run_world_probe(a: argparse.Namespace) -> None:
    import json

    from ..io import write_text
    from ..world.narrative_probe import probe_world

    try:
        report = probe_world(a.world, a.seed)
    except ValueError as err:
        raise CoEmoGenError(str(err)) from None
    text = json.dumps(report, indent=1)
    if a.out:
        write_text(a.out, text + "\n")
    print(text)


def run_world_pocket(a: argparse.Namespace) -> None:
    import json

    from ..world.pocket import build_pocket_models

    if getattr(a, "content", "objects") == "narrative":
        from ..world.pocket import NARRATIVE_CLIP_STEPS, NARRATIVE_UNET_STEPS, build_narrative_pocket_models

        facts = build_narrative_pocket_models(
            a.out,
            a.corpus_size,
            a.seed,
            clip_steps=a.clip_steps or NARRATIVE_CLIP_STEPS,
            unet_steps=a.unet_steps or NARRATIVE_UNET_STEPS,
        )
    else:
        facts = build_pocket_models(a.out, a.corpus_size, a.seed)
    print(json.dumps(facts, indent=1))


def run_world_judges(a: argparse.Namespace) -> None:
    import json

    from ..taxonomy import Taxonomy
    from ..world.judges import build_evaluators

    if getattr(a, "content", "objects") == "narrative" and (a.style != "photo" or a.taxonomy):
        raise CoEmoGenError("the narrative world's judges have the photo style and the Mikels emotions only")
    report = build_evaluators(
        a.out,
        a.test_world,
        a.images_per_emotion,
        a.seed,
        a.steps,
        style=a.style,
        taxonomy=Taxonomy.load(a.taxonomy),
        content=getattr(a, "content", "objects"),
    )
    print(json.dumps(report, indent=1))


def run_world_probe_sensitivity(a: argparse.Namespace) -> None:
    import json

    from ..world.narrative_probe import probe_sensitivity

    for row in probe_sensitivity(a.out, a.images_per_emotion, a.seed):
        print(json.dumps(row))


def run_world_sheet(a: argparse.Namespace) -> None:
    from ..world.narrative_draw import relation_sheet, world_sheet

    written = world_sheet(a.world, a.out) if a.world else relation_sheet(a.out, seed=a.seed)
    print(f"wrote {written}")
