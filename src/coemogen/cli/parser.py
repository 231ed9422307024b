"""The `coemogen` argument parser: one sub-command per stage; the `train` flags come from the
configuration dataclasses (coemogen/training/config.py)."""

from __future__ import annotations

import argparse

from .. import registry
from ..models.configs import DEFAULT_INFERENCE_STEPS
from ..training.config import add_training_flags
from . import commands


def _add_model_sources(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--pretrained_model_name_or_path",
        "--pretrained-model-name-or-path",
        help="Stable Diffusion (1.x/2.x or SDXL) hub id or local diffusers directory (default: the pocket SD)",
    )
    p.add_argument(
        "--clip_model_name_or_path",
        "--clip-model-name-or-path",
        help="CLIP hub id or local directory (default: the pocket CLIP)",
    )
    p.add_argument("--preset", choices=list(registry.presets()), help=registry.preset_help())
    p.add_argument(
        "--pretrained_vae_model_name_or_path",
        "--pretrained-vae-model-name-or-path",
        help="a VAE replacing the base model's (e.g. an fp16-safe SDXL VAE; SDXL's own stays in fp32)",
    )


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
    p.set_defaults(func=commands.cmd_world_build)
    p = world.add_parser("probe", help="narrative world: emotion accuracy from the relation against the attribute bag")
    p.add_argument("world", help="a world built with --content narrative")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="also write the report as JSON here")
    p.set_defaults(func=commands.cmd_world_probe)
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
    p.set_defaults(func=commands.cmd_world_pocket)
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
    p.set_defaults(func=commands.cmd_world_judges)

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
    p.add_argument(
        "--dtype", default="auto", help="hf: captioner dtype (auto: the checkpoint's on a GPU, float32 on a CPU)"
    )
    p.add_argument("--batch-size", type=int)
    p.add_argument("--max-new-tokens", type=int, help="hf: captioners only (default 96)")
    p.add_argument("--hallucination-rate", type=float, default=0.2, help="oracle captioner only")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=commands.cmd_caption)
    p = sub.add_parser("caption-merge", help="merge caption shards")
    p.add_argument("parts", nargs="+")
    p.add_argument("--out", required=True)
    p.set_defaults(func=commands.cmd_caption_merge)

    p = sub.add_parser("filter", help="CLIP-score captions and drop the bottom share per emotion")
    p.add_argument("--captions", required=True)
    p.add_argument("--out", required=True, help="training manifest (JSONL)")
    p.add_argument("--drop", type=float, default=0.2)
    p.add_argument("--clip_model_name_or_path", "--clip-model-name-or-path")
    p.add_argument("--preset", choices=list(registry.presets()), help=registry.preset_help())
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=commands.cmd_filter)

    p = sub.add_parser("cache", help="precompute VAE latents, caption embeddings and CLIP image tokens for training")
    p.add_argument("--manifest", required=True, help="training manifest (the one `coemogen train` will read)")
    p.add_argument("--out", required=True, help="cache directory (resumable: re-run to finish it)")
    _add_model_sources(p)
    p.add_argument("--taxonomy", help="mikels (default), artemis, emoart, or a JSON/YAML taxonomy file")
    p.add_argument("--resolution", type=int, help="training resolution (default: the U-Net's)")
    p.add_argument("--random_flip", action="store_true", help="also cache each image's mirror image")
    p.add_argument(
        "--cache_image_tokens", action="store_true", help="also cache the CLIP image tokens v_i (half precision)"
    )
    p.add_argument("--image_token_layer", type=int, default=-1, help="CLIP hidden layer of the tokens (default: last)")
    p.add_argument("--shard_size", type=int, default=256, help="records per shard file")
    p.add_argument("--batch_size", type=int, default=16)
    p.set_defaults(func=commands.cmd_cache)

    p = sub.add_parser("train", help="train CoEmoGen on a manifest (JSONL: image, emotion, caption)")
    add_training_flags(p)
    p.set_defaults(func=commands.cmd_train)

    p = sub.add_parser("clusters", help="refit a trained run's emotion clusters")
    p.add_argument("--model", required=True, help="run directory")
    p.add_argument("--manifest", required=True, help="the training manifest")
    p.add_argument("--components", type=int, default=1, help="Gaussian mixture components per emotion")
    p.add_argument("--temperature", type=float, help="the run's default sampling temperature (1 = fitted spread)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=commands.cmd_clusters)

    p = sub.add_parser("generate", help="generate images for an emotion or a mix")
    p.add_argument("--model", help="run directory (default: the shipped synthetic-world run)")
    p.add_argument(
        "--emotion",
        required=True,
        help="name, mix 'amusement:0.5,awe:0.5', several separated by ';' (cycled over images), "
        "or 'all': --num-images of every emotion, one folder each (the paper's evaluation set)",
    )
    p.add_argument(
        "--num-images",
        "--num_images",
        type=int,
        default=8,
        help="images (per emotion with 'all'); images already in --out are kept, so a re-run completes the set",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--template", help="prompt template, e.g. 'a photo of {} bag' (emotion transfer)")
    p.add_argument("--scheduler", default="dpm", choices=["dpm", "ddim", "euler", "pndm", "ddpm"])
    p.add_argument("--num_inference_steps", "--steps", type=int, default=DEFAULT_INFERENCE_STEPS)
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
    p.set_defaults(func=commands.cmd_generate)

    p = sub.add_parser("evaluate", help="FID, LPIPS, Emo-A, Sem-C, Sem-D per emotion and overall")
    p.add_argument("--images", help="generated images (with metadata JSON or per-emotion folders)")
    p.add_argument("--reference", help="reference dataset (its test split is used)")
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
    p.set_defaults(func=commands.cmd_evaluate)

    head = sub.add_parser("emotion-head", help="the CLIP linear emotion classifier used for Emo-A on real data")
    p = head.add_subparsers(dest="head_command", required=True).add_parser("train", help="fit it on a dataset")
    p.add_argument("--dataset", required=True, help="EmoSet folder (train split; val/test for accuracy) or any dataset")
    p.add_argument("--out", required=True)
    p.add_argument("--clip_model_name_or_path", default="openai/clip-vit-large-patch14")
    p.add_argument("--taxonomy")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=commands.cmd_emotion_head)

    bench = sub.add_parser("bench", help="reproductions").add_subparsers(dest="bench_command", required=True)
    p = bench.add_parser("paper-table", help="every method and ablation in the synthetic world, with seeds and CIs")
    p.add_argument("--out", default="paper-table", help="resumable: finished (row, seed) pairs there are kept")
    p.add_argument(
        "--scale",
        choices=["default", "short", "resolved", "long", "quick"],
        default="default",
        help="default: 600 steps, 32 images per emotion; short: 200 steps, 12 images (the committed table); "
        "resolved: short with 40 images per emotion (both worlds' resolved tables); "
        "long: 3000 steps at batch 2 on a 100-per-emotion world (the filter study); quick: a smoke test",
    )
    p.add_argument("--quick", action="store_true", help="same as --scale quick")
    p.add_argument("--seeds", type=int, default=1, help="training seeds per row (seed, seed+1, ...)")
    p.add_argument("--seed", type=int, default=0, help="first training seed; also the world's and captions' seed")
    p.add_argument("--rows", nargs="+", help="only these rows (names as in the table)")
    p.add_argument(
        "--content",
        choices=["objects", "narrative"],
        default="objects",
        help="the synthetic world (its pocket models and judges): objects, or narrative (docs/world-narrative.md)",
    )
    p.add_argument("--num-resamples", type=int, default=1000, help="bootstrap replicates of each interval")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite the table from the finished (row, seed) pairs; train nothing",
    )
    p.set_defaults(func=commands.cmd_bench_paper_table)
    p = bench.add_parser("claims", help="the paper's claims marked holds / within noise / fails from paper tables")
    p.add_argument(
        "--table",
        action="append",
        required=True,
        metavar="WORLD=DIR",
        help="a finished paper table and its world, e.g. objects=docs/paper-table/objects-resolved (repeatable)",
    )
    p.add_argument("--out", required=True, help="the claims table (Markdown; its JSON beside it)")
    p.set_defaults(func=commands.cmd_bench_claims)
    p = bench.add_parser("emoart", help="the EmoArt scalability study: paintings selected by a photo classifier")
    p.add_argument("--out", default="emoart", help="resumable: finished stages there are kept")
    p.add_argument("--quick", action="store_true", help="a smoke version (tests)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=commands.cmd_bench_emoart)

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
    p.set_defaults(func=commands.cmd_analyze_timesteps)

    p = sub.add_parser("export", help="a run's emotions as LoRA + embedding files for diffusers, A1111, ComfyUI")
    p.add_argument("--model", help="run directory (default: the shipped synthetic-world run)")
    p.add_argument("--out", required=True, help="export folder: one sub-folder per emotion and a root model card")
    p.add_argument(
        "--emotions", nargs="+", help="names or mixes 'fear:0.7,sadness:0.3' (default: every emotion of the run)"
    )
    p.add_argument(
        "--num-embeddings",
        "--num_embeddings",
        type=int,
        default=4,
        help="cluster samples exported besides the mean; sample k is the one `generate --seed SEED+k` draws",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the first sampled embedding")
    p.add_argument("--license", help="model-card license (default: creativeml-openrail-m; pocket SD: apache-2.0)")
    p.add_argument("--metrics", help="a `coemogen evaluate` metrics.json (or its folder) to quote in the model cards")
    p.add_argument("--push_to_hub", "--push-to-hub", metavar="REPO_ID", help="then upload the folder to this Hub repo")
    p.add_argument("--hub_token", "--hub-token", help="Hub token (default: the logged-in one)")
    p.add_argument("--private", action="store_true", help="create the Hub repository private")
    p.set_defaults(func=commands.cmd_export)

    p = sub.add_parser("web", help="the Gradio web app on a run (default: the shipped synthetic-world run)")
    p.add_argument("--model", help="run directory (default: the shipped synthetic-world run)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind; 0.0.0.0 exposes the app to the network")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--device")
    p.add_argument("--max-images", type=int, default=8, help="images per request at most")
    p.add_argument("--max-steps", type=int, default=50, help="denoising steps per request at most")
    p.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="requests served at once, batched into one denoising pass on the one model copy",
    )
    p.add_argument("--max-queue", type=int, default=16, help="requests waiting at most; more are refused")
    p.set_defaults(func=commands.cmd_web)

    p = sub.add_parser("doctor", help="check the environment: torch and device, versions, hub, base models, disk")
    p.add_argument("--out", default=".", help="output folder to check for free space and write access")
    p.add_argument("--model", help="run directory whose base models to look for (default: the shipped world run)")
    p.add_argument("--preset", choices=list(registry.presets()), help="look for this preset's base models instead")
    p.set_defaults(func=commands.cmd_doctor)

    study = sub.add_parser("study", help="human preference studies: create, serve, analyze, simulate").add_subparsers(
        dest="study_command", required=True
    )
    p = study.add_parser("create", help="a study folder from the image folders of several methods")
    p.add_argument(
        "--methods", nargs="+", required=True, metavar="NAME=IMAGE_DIR", help="`generate --emotion all` folders"
    )
    p.add_argument("--out", required=True, help="the new study folder")
    p.add_argument("--design", choices=["paired", "pick-one"], default="paired")
    p.add_argument(
        "--questions", nargs="+", metavar="ID=TEXT", help="default: emotion and coherence ({emotion} allowed)"
    )
    p.add_argument("--trials-per-participant", type=int, default=24)
    p.add_argument("--sequences", type=int, default=64, help="participant sequences; participants take them in turn")
    p.add_argument("--repeats", type=int, default=2, help="repeated trials (sides swapped) per participant")
    p.add_argument("--gold", metavar="REAL_DIR", help="real images, REAL_DIR/<emotion>/*, for gold trials")
    p.add_argument("--gold-trials", type=int, default=2)
    p.add_argument("--images-per-emotion", type=int, help="use at most this many images of each emotion per method")
    p.add_argument("--title", default="Image study")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=commands.cmd_study)
    p = study.add_parser("serve", help="the participants' page (any browser, phones included)")
    p.add_argument("study")
    p.add_argument("--host", default="127.0.0.1", help="address to bind; 0.0.0.0 exposes the study to the network")
    p.add_argument("--port", type=int, default=8765, help="0: any free port (printed)")
    p.add_argument("--database", help="sqlite:///PATH or postgresql://... (default: STUDY/answers.sqlite)")
    p.set_defaults(func=commands.cmd_study)
    p = study.add_parser("analyze", help="exclusions, preference statistics, agreement; a report with plots")
    p.add_argument("study")
    p.add_argument("--out", required=True)
    p.add_argument("--database", help="as for serve")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=commands.cmd_study)
    p = study.add_parser("simulate", help="simulated participants answering from the world's judges")
    p.add_argument("study")
    p.add_argument("--participants", type=int, required=True)
    p.add_argument("--database", help="as for serve")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=commands.cmd_study)

    p = sub.add_parser("demo", help="the whole pipeline on the synthetic world")
    p.add_argument("--out", default="coemogen-demo")
    p.add_argument("--quick", action="store_true", help="a 2-minute smoke version")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--cluster-temperature", "--cluster_temperature", type=float, help="default: the shipped world run's"
    )
    p.set_defaults(func=commands.cmd_demo)
    return parser
