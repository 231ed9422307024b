"""The `coemogen` command line: world build, caption, filter, train, generate, evaluate, demo."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import fields
from pathlib import Path

from .errors import CoEmoGenError


def _bool(text: str) -> bool:
    if text.lower() in {"1", "true", "yes", "on"}:
        return True
    if text.lower() in {"0", "false", "no", "off"}:
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got '{text}'")


def _add_model_sources(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--pretrained_model_name_or_path",
        "--pretrained-model-name-or-path",
        help="Stable Diffusion 1.x hub id or local diffusers directory (default: the pocket SD)",
    )
    p.add_argument(
        "--clip_model_name_or_path",
        "--clip-model-name-or-path",
        help="CLIP hub id or local directory (default: the pocket CLIP)",
    )
    p.add_argument(
        "--preset",
        choices=["pocket", "sd15"],
        help="sd15 = stable-diffusion-v1-5/stable-diffusion-v1-5 + openai/clip-vit-large-patch14",
    )


def cmd_world_build(a: argparse.Namespace) -> None:
    from .world.dataset import build_world, write_corpus

    path = build_world(a.out, a.images_per_emotion, a.seed, a.size, a.content_noise)
    if a.corpus:
        write_corpus(Path(a.out) / "neutral_corpus", a.corpus, a.seed + 1, a.size)
    print(f"wrote the synthetic world to {path}")


def cmd_world_pocket(a: argparse.Namespace) -> None:
    import json

    from .world.pocket import build_pocket_models

    facts = build_pocket_models(a.out, a.corpus_size, a.seed)
    print(json.dumps(facts, indent=1))


def cmd_train(a: argparse.Namespace) -> None:
    from .trainer import TrainArgs, train

    kwargs = {f.name: getattr(a, f.name) for f in fields(TrainArgs) if hasattr(a, f.name)}
    run = train(TrainArgs(**kwargs))
    print(f"saved run to {run}")


def cmd_clusters(a: argparse.Namespace) -> None:
    from .trainer import refit_clusters

    clusters = refit_clusters(a.model, a.manifest, a.components, a.seed, a.temperature)
    print(f"refitted {clusters.weights.shape[1]}-component clusters in {a.model}")


def cmd_generate(a: argparse.Namespace) -> None:
    from .pipeline import CoEmoGenPipeline, save_images
    from .taxonomy import Taxonomy

    taxonomy = Taxonomy.load(a.taxonomy) if a.taxonomy else None
    pipe = CoEmoGenPipeline.from_pretrained(
        a.model, a.pretrained_model_name_or_path, a.clip_model_name_or_path, a.device, taxonomy
    )
    emotions = [e for e in a.emotion.split(";") if e.strip()] or [a.emotion]
    for spec in emotions:
        pipe.taxonomy.parse_mix(spec)  # fail on a bad name before any work
    output = pipe(
        emotions,
        num_images=a.num_images,
        seed=a.seed,
        template=a.template,
        num_inference_steps=a.num_inference_steps,
        guidance_scale=a.guidance_scale,
        scheduler=a.scheduler,
        batch_size=a.batch_size,
        progress=True,
        cluster_temperature=a.cluster_temperature,
    )
    out = save_images(output, a.out)
    print(f"wrote {len(output.images)} images, metadata and grid.png to {out}")


def cmd_caption(a: argparse.Namespace) -> None:
    import json

    from .captioners import make_captioner
    from .captioning import run_captioning
    from .data.manifest import SkipCounter
    from .data.readers import read_dataset
    from .tables import format_table
    from .taxonomy import Taxonomy

    skips = SkipCounter()
    items = read_dataset(a.dataset, Taxonomy.load(a.taxonomy), skips, a.skip_unknown_emotions, a.image_dir)
    if a.split:
        items = [it for it in items if it.split in a.split]
    template = Path(a.prompt_template).read_text(encoding="utf-8") if a.prompt_template else None
    captioner = make_captioner(
        a.captioner,
        template,
        not a.no_emotion_prior,
        model=a.model,
        concurrency=a.concurrency,
        timeout=a.timeout,
        max_retries=a.max_retries,
        api_key_env=a.api_key_env,
        device=a.device,
        dtype=a.dtype,
        batch_size=a.batch_size,
        max_new_tokens=a.max_new_tokens,
        hallucination_rate=a.hallucination_rate,
        seed=a.seed,
    )
    summary = run_captioning(items, captioner, a.out, a.shard, skips)
    rows = [{"emotion": e, "written": n} for e, n in sorted(summary["per_emotion"].items())]
    print(format_table(rows, ["emotion", "written"]))
    print(json.dumps({k: v for k, v in summary.items() if k != "per_emotion"}, indent=1))
    if summary["written"] + summary["already_done"] == 0:
        raise CoEmoGenError("no caption could be produced")


def cmd_caption_merge(a: argparse.Namespace) -> None:
    from .captioning import merge_shards

    print(f"merged {merge_shards(a.parts, a.out)} records into {a.out}")


def cmd_filter(a: argparse.Namespace) -> None:
    from .filtering import filter_captions
    from .loaders import resolve_sources

    clip = resolve_sources(None, a.clip_model_name_or_path, a.preset)[1]
    filter_captions(a.captions, a.out, clip, a.drop, a.batch_size, a.device, a.seed)


def cmd_world_judges(a: argparse.Namespace) -> None:
    import json

    from .world.evaluators import build_evaluators

    print(json.dumps(build_evaluators(a.out, a.test_world, a.images_per_emotion, a.seed, a.steps), indent=1))


def cmd_evaluate(a: argparse.Namespace) -> None:
    from .evaluation import build_metric_networks, evaluate, markdown_table
    from .taxonomy import Taxonomy

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
        scene_classifier=a.scene_classifier,
        object_classifier=a.object_classifier,
        clip_model_name_or_path=a.clip_model_name_or_path,
        evaluators=a.evaluators,
    )
    report = evaluate(a.images, a.reference, a.out, taxonomy, a.num_pairs, a.seed, a.max_reference, networks)
    print(markdown_table(report))
    print(f"wrote {a.out}/metrics.json, metrics.md and report.html")


def cmd_emotion_head(a: argparse.Namespace) -> None:
    import json

    from .metric_networks import train_emotion_head
    from .taxonomy import Taxonomy

    config = train_emotion_head(
        a.dataset, a.out, a.clip_model_name_or_path, Taxonomy.load(a.taxonomy), a.steps, seed=a.seed
    )
    print(json.dumps(config["accuracy"], indent=1))
    print(f"wrote {a.out}/head.safetensors and config.json")


def cmd_demo(a: argparse.Namespace) -> None:
    from .demo import run_demo

    run_demo(a.out, a.quick, a.seed, cluster_temperature=a.cluster_temperature)


def cmd_bench_paper_table(a: argparse.Namespace) -> None:
    from .bench import paper_table

    paper_table(a.out, a.quick, a.seed, a.rows)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coemogen", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

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
    p.set_defaults(func=cmd_world_build)
    p = world.add_parser("pocket", help="retrain the pocket CLIP and Stable Diffusion models")
    p.add_argument("--out", required=True)
    p.add_argument("--corpus-size", type=int, default=6000)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_world_pocket)
    p = world.add_parser("judges", help="retrain the world's independent evaluators")
    p.add_argument("--out", required=True)
    p.add_argument("--test-world", required=True, help="a built world whose test split measures accuracy")
    p.add_argument("--images-per-emotion", type=int, default=600)
    p.add_argument("--seed", type=int, default=100)
    p.add_argument("--steps", type=int, default=1000)
    p.set_defaults(func=cmd_world_judges)

    p = sub.add_parser("caption", help="caption a dataset with an MLLM (resumable JSONL)")
    p.add_argument("--dataset", required=True, help="EmoSet folder, folder per emotion, ArtEmis CSV or manifest")
    p.add_argument("--captioner", required=True, help="attributes | oracle[:rate] | hf:<model> | openai:<base url>")
    p.add_argument("--out", required=True)
    p.add_argument("--taxonomy", help="mikels (default), artemis, emoart, or a JSON/YAML file")
    p.add_argument("--image-dir", help="WikiArt image folder for an ArtEmis CSV")
    p.add_argument("--split", nargs="+", help="only these EmoSet splits (e.g. train)")
    p.add_argument("--skip-unknown-emotions", action="store_true")
    p.add_argument("--prompt-template", help="text file; {emotion} is replaced by the label")
    p.add_argument("--no-emotion-prior", action="store_true", help="do not tell the captioner the emotion")
    p.add_argument("--shard", help="k/n: caption only shard k of n")
    p.add_argument("--model", help="model name sent to an openai: server")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    p.add_argument("--max-retries", type=int, default=5)
    p.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    p.add_argument("--device")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--max-new-tokens", type=int, help="hf: captioners only (default 96)")
    p.add_argument("--hallucination-rate", type=float, default=0.2, help="oracle captioner only")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_caption)
    p = sub.add_parser("caption-merge", help="merge caption shards")
    p.add_argument("parts", nargs="+")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_caption_merge)

    p = sub.add_parser("filter", help="CLIP-score captions and drop the bottom share per emotion")
    p.add_argument("--captions", required=True)
    p.add_argument("--out", required=True, help="training manifest (JSONL)")
    p.add_argument("--drop", type=float, default=0.2)
    p.add_argument("--clip_model_name_or_path", "--clip-model-name-or-path")
    p.add_argument("--preset", choices=["pocket", "sd15"])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_filter)

    p = sub.add_parser("train", help="train CoEmoGen on a manifest (JSONL: image, emotion, caption)")
    p.add_argument("--manifest", required=True)
    p.add_argument("--out", required=True, help="run directory")
    _add_model_sources(p)
    p.add_argument("--taxonomy", help="JSON/YAML taxonomy file (default: the 8 Mikels emotions)")
    p.add_argument("--resolution", type=int)
    p.add_argument("--train_batch_size", type=int, default=8)
    p.add_argument("--gradient_accumulation_steps", type=int, default=1)
    p.add_argument("--max_train_steps", type=int, default=1000)
    p.add_argument("--learning_rate", type=float, default=1e-3)
    p.add_argument("--weight_decay", type=float, default=1e-2)
    p.add_argument("--lambda_sem", type=float, default=1.0, help="weight of L_SEM (0 = the w/o L_SEM ablation)")
    p.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"], default="no")
    p.add_argument("--gradient_checkpointing", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpointing_steps", type=int, default=500)
    p.add_argument("--checkpoints_total_limit", type=int)
    p.add_argument("--resume_from_checkpoint", help="'latest' or a checkpoint directory")
    p.add_argument("--validation_steps", type=int)
    p.add_argument("--report_to", choices=["tensorboard", "none"], default="tensorboard")
    p.add_argument("--mapper_hidden_dim", type=int, default=512)
    p.add_argument("--lora_rank", type=int, default=4)
    p.add_argument("--lora_targets", nargs="+", default=["to_q", "to_k", "to_v", "to_out.0"])
    p.add_argument("--emotion_lora", type=_bool, default=True, help="false: w/o emotion-specific LoRAs")
    p.add_argument("--group_lora", type=_bool, default=True, help="false: w/o polarity-shared LoRAs")
    p.add_argument("--shared_lora", type=_bool, default=False, help="true: one LoRA for all emotions (baseline)")
    p.add_argument(
        "--perception_encoder",
        type=_bool,
        default=True,
        help="false: one learned token per emotion, no image features (textual inversion baseline)",
    )
    p.add_argument("--image_token_layer", type=int, default=-1, help="CLIP vision hidden layer used as v_i")
    p.add_argument("--template", default="{}", help="prompt template around the placeholder")
    p.add_argument("--cluster_components", type=int, default=1, help="Gaussian mixture components per emotion")
    p.add_argument("--dataloader_num_workers", type=int, default=0)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("clusters", help="refit a trained run's emotion clusters")
    p.add_argument("--model", required=True, help="run directory")
    p.add_argument("--manifest", required=True, help="the training manifest")
    p.add_argument("--components", type=int, default=1, help="Gaussian mixture components per emotion")
    p.add_argument("--temperature", type=float, help="the run's default sampling temperature (1 = fitted spread)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_clusters)

    p = sub.add_parser("generate", help="generate images for an emotion or a mix")
    p.add_argument("--model", help="run directory (default: the shipped synthetic-world run)")
    p.add_argument(
        "--emotion",
        required=True,
        help="name, mix 'amusement:0.5,awe:0.5', or several separated by ';' (cycled over images)",
    )
    p.add_argument("--num-images", "--num_images", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--template", help="prompt template, e.g. 'a photo of {} bag' (emotion transfer)")
    p.add_argument("--scheduler", default="dpm", choices=["dpm", "ddim", "euler", "pndm", "ddpm"])
    p.add_argument("--num_inference_steps", "--steps", type=int, default=25)
    p.add_argument("--guidance_scale", type=float, default=5.0)
    p.add_argument(
        "--cluster-temperature",
        "--cluster_temperature",
        type=float,
        help="scale of the cluster spread: 0 = emotion mean (fidelity), 1 = fitted spread (diversity); "
        "default: the run's own (see its config.json)",
    )
    p.add_argument("--batch-size", "--batch_size", type=int, default=16)
    p.add_argument("--device")
    p.add_argument("--taxonomy", help="expected taxonomy file; a run from another taxonomy is refused")
    p.add_argument("--pretrained_model_name_or_path", help="override the run's base Stable Diffusion")
    p.add_argument("--clip_model_name_or_path", help="override the run's CLIP")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("evaluate", help="FID, LPIPS, Emo-A, Sem-C, Sem-D per emotion and overall")
    p.add_argument("--images", required=True, help="generated images (with metadata JSON or per-emotion folders)")
    p.add_argument("--reference", required=True, help="reference dataset (its test split is used)")
    p.add_argument("--out", required=True, help="report folder")
    p.add_argument("--taxonomy")
    p.add_argument("--num-pairs", type=int, default=1000)
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
    nets.add_argument("--emotion-classifier", help="Emo-A head folder from `coemogen emotion-head train`")
    nets.add_argument("--scene-classifier", help="ARCH:WEIGHTS, e.g. resnet18:resnet18_places365.pth.tar")
    nets.add_argument("--object-classifier", help="ARCH:WEIGHTS, e.g. resnet50:resnet50-11ad3fa6.pth")
    nets.add_argument(
        "--clip_model_name_or_path", help="CLIP for Sem-D (default: pocket CLIP in the world, else ViT-L/14)"
    )
    p.set_defaults(func=cmd_evaluate)

    head = sub.add_parser("emotion-head", help="the CLIP linear emotion classifier used for Emo-A on real data")
    p = head.add_subparsers(dest="head_command", required=True).add_parser("train", help="fit it on a dataset")
    p.add_argument("--dataset", required=True, help="EmoSet folder (train split; val/test for accuracy) or any dataset")
    p.add_argument("--out", required=True)
    p.add_argument("--clip_model_name_or_path", default="openai/clip-vit-large-patch14")
    p.add_argument("--taxonomy")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_emotion_head)

    bench = sub.add_parser("bench", help="reproductions").add_subparsers(dest="bench_command", required=True)
    p = bench.add_parser("paper-table", help="every method and ablation in the synthetic world")
    p.add_argument("--out", default="paper-table")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rows", nargs="+", help="only these rows (names as in the table)")
    p.set_defaults(func=cmd_bench_paper_table)

    p = sub.add_parser("demo", help="the whole pipeline on the synthetic world")
    p.add_argument("--out", default="coemogen-demo")
    p.add_argument("--quick", action="store_true", help="a 2-minute smoke version")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--cluster-temperature", "--cluster_temperature", type=float, help="default: the shipped world run's"
    )
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    try:
        args.func(args)
    except CoEmoGenError as err:
        print(f"coemogen: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
