"""`coemogen evaluate` (FID, LPIPS, Emo-A, Sem-C, Sem-D) and `coemogen emotion-head train`."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import CoEmoGenError


def add_to(sub: argparse._SubParsersAction) -> None:
    """Add the command's parser (and its sub-commands) to `sub`."""
    p = sub.add_parser("evaluate", help="FID, LPIPS, Emo-A, Sem-C, Sem-D per emotion and overall")
    p.add_argument("--images", help="generated images (with metadata JSON or per-emotion folders)")
    p.add_argument("--reference", help="reference dataset (its test split is used)")
    edits = p.add_argument_group("edits of your images (instead of --images/--reference): EmoEdit's metrics")
    edits.add_argument("--edits", help="a folder `coemogen edit` wrote")
    edits.add_argument(
        "--sources", help="the folder of the edited sources (emotion-named sub-folders name their emotion)"
    )
    va = p.add_argument_group("valence/arousal (with --images): images made with --valence/--arousal")
    va.add_argument(
        "--va-head",
        "--va_head",
        help="a `coemogen va-head train` folder: V-Error, A-Error, Spearman and polarity flips of the images "
        "whose metadata records a valence/arousal point (va_metrics.json; alone, or beside the metrics with "
        "--reference)",
    )
    transfer = p.add_argument_group("emotion transfer (instead of --images/--reference)")
    transfer.add_argument(
        "--transfer",
        metavar="TEMPLATE",
        help="generate every emotion into this content template ('a photo of {} bag'; in the world e.g. '{} balloon') "
        "and report content kept (CLIP similarity to the template without the placeholder) and Emo-A",
    )
    transfer.add_argument("--model", help="run directory for --transfer (default: the shipped synthetic-world run)")
    transfer.add_argument("--num-images", "--num_images", type=int, default=8, help="transfer images per emotion")
    p.add_argument("--out", required=True, help="report folder")
    p.add_argument("--taxonomy")
    p.add_argument("--num-pairs", type=int, help="pairs per emotion for LPIPS and Sem-D (default 1000; emogen: 10)")
    p.add_argument(
        "--protocol",
        choices=["coemogen", "emogen"],
        default="coemogen",
        help="emogen: EmoGen's evaluation script where it differs from ours (see docs/evaluation.md)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-reference", type=int, default=500, help="reference images per emotion")
    p.add_argument("--evaluators", help="folder of world judges (default: the shipped ones)")
    nets = p.add_argument_group("metric networks (auto: the world's judges for a world reference, else the paper's)")
    nets.add_argument("--fid-features", choices=["auto", "inception", "world"], default="auto")
    nets.add_argument("--inception-weights", help="local pt_inception-2015-12-05-6726825d.pth (else downloaded)")
    nets.add_argument("--lpips-net", choices=["auto", "alex", "world"], default="auto")
    nets.add_argument("--alexnet-weights", help="torchvision AlexNet weights file (alexnet-owt-7be5be79.pth)")
    nets.add_argument("--lpips-lin-weights", help="LPIPS linear layers (default: the copy inside torchmetrics)")
    nets.add_argument("--lpips-size", type=int, default=256, help="resolution LPIPS compares at")
    nets.add_argument(
        "--emotion-classifier",
        help="Emo-A head: a folder from `coemogen emotion-head train`, or a published head file "
        "(EmoGen's fc on CLIP ViT-L/14, EmoEdit's hidden+fc on ViT-B/32; .pth read as tensors only)",
    )
    nets.add_argument("--emotion-clip", help="CLIP of a published head (default: the one it was trained on)")
    nets.add_argument("--scene-classifier", help="ARCH:WEIGHTS, e.g. resnet18:resnet18_places365.pth.tar")
    nets.add_argument("--object-classifier", help="ARCH:WEIGHTS, e.g. resnet50:resnet50-11ad3fa6.pth")
    nets.add_argument(
        "--clip_model_name_or_path", help="CLIP for Sem-D (default: pocket CLIP in the world, else ViT-L/14)"
    )
    p.set_defaults(func=run_evaluate)

    head = sub.add_parser("emotion-head", help="the CLIP linear emotion classifier used for Emo-A on real data")
    p = head.add_subparsers(dest="head_command", required=True).add_parser("train", help="fit it on a dataset")
    p.add_argument("--dataset", required=True, help="EmoSet folder (train split; val/test for accuracy) or any dataset")
    p.add_argument("--out", required=True)
    p.add_argument("--clip_model_name_or_path", default="openai/clip-vit-large-patch14")
    p.add_argument("--taxonomy")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_emotion_head)


def run_evaluate(a: argparse.Namespace) -> None:
    from ..evaluation.evaluate import build_metric_networks, evaluate
    from ..evaluation.report import markdown_table
    from ..taxonomy import Taxonomy

    if a.edits:
        from ..evaluation.edits import edit_networks, evaluate_edits

        if not a.sources:
            raise CoEmoGenError("--edits needs --sources (the folder of the edited images)")
        taxonomy = Taxonomy.load(a.taxonomy)
        nets = edit_networks(
            a.sources, taxonomy, a.alexnet_weights, a.lpips_lin_weights, a.emotion_classifier, a.emotion_clip,
            a.clip_model_name_or_path, a.evaluators,
        )  # fmt: skip
        evaluate_edits(a.edits, a.sources, a.out, taxonomy, nets, a.seed)
        print((Path(a.out) / "edits.md").read_text())
        return
    if a.transfer:
        from ..evaluation.emotion_head import emotion_head
        from ..evaluation.transfer import evaluate_transfer

        judge = None
        if a.emotion_classifier:
            judge = emotion_head(a.emotion_classifier, a.emotion_clip, Taxonomy.load(a.taxonomy))
        evaluate_transfer(a.transfer, a.out, a.model, a.num_images, a.seed, judge=judge)
        print(f"wrote {a.out}/transfer.md, transfer.json and grid.png")
        return
    if a.va_head:
        if not a.images:
            raise CoEmoGenError("--va-head needs --images")
        from ..evaluation.va import VAHead, evaluate_va

        va = evaluate_va(a.images, VAHead(a.va_head), a.out)
        print(
            f"V-Error {va['v_error']:.3f}  A-Error {va['a_error']:.3f}  Spearman V {va['v_spearman']:.3f} "
            f"A {va['a_spearman']:.3f}  polarity flips {va['polarity_flips']:.3f}  ({va['images']} images)"
        )
        print(f"wrote {a.out}/va_metrics.json")
        if not a.reference:
            return
    if not (a.images and a.reference):
        raise CoEmoGenError("evaluate needs --images and --reference (or --transfer TEMPLATE)")
    taxonomy = Taxonomy.load(a.taxonomy)
    networks = build_metric_networks(
        a.reference,
        taxonomy,
        fid=a.fid_features,
        inception_weights=a.inception_weights,
        lpips=a.lpips_net,
        alexnet_weights=a.alexnet_weights,
        lpips_lin_weights=a.lpips_lin_weights,
        lpips_size=a.lpips_size,
        emotion_classifier=a.emotion_classifier,
        emotion_clip=a.emotion_clip,
        scene_classifier=a.scene_classifier,
        object_classifier=a.object_classifier,
        clip_model_name_or_path=a.clip_model_name_or_path,
        evaluators=a.evaluators,
    )
    report = evaluate(
        a.images, a.reference, a.out, taxonomy, a.num_pairs, a.seed, a.max_reference, networks, a.protocol
    )
    print(markdown_table(report))
    print(f"wrote {a.out}/metrics.json, metrics.md and report.html")


def run_emotion_head(a: argparse.Namespace) -> None:
    import json

    from ..evaluation.emotion_head import train_emotion_head
    from ..taxonomy import Taxonomy

    config = train_emotion_head(
        a.dataset, a.out, a.clip_model_name_or_path, Taxonomy.load(a.taxonomy), a.steps, seed=a.seed
    )
    print(json.dumps(config["accuracy"], indent=1))
    print(f"wrote {a.out}/head.safetensors and config.json")
