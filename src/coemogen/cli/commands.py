"""What each `coemogen` command does: parse nothing, import lazily, call the package."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import CoEmoGenError


def cmd_world_build(a: argparse.Namespace) -> None:
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


def cmd_world_probe(a: argparse.Namespace) -> None:
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


def cmd_world_pocket(a: argparse.Namespace) -> None:
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


def cmd_train(a: argparse.Namespace) -> None:
    from ..training.config import split_training_flags
    from ..training.loop import train

    args, hyperparameters = split_training_flags(a)
    run = train(args, **hyperparameters)
    print(f"saved run to {run}")


def cmd_cache(a: argparse.Namespace) -> None:
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    from ..training.cache import run_cache_command

    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))  # as Accelerator reads it
    run_cache_command(a, state.process_index, state.num_processes, state.device)
    state.wait_for_everyone()


def cmd_clusters(a: argparse.Namespace) -> None:
    from ..training.coemogen import refit_clusters

    clusters = refit_clusters(a.model, a.manifest, a.components, a.seed, a.temperature)
    print(f"refitted {clusters.weights.shape[1]}-component clusters in {a.model}")


def cmd_generate(a: argparse.Namespace) -> None:
    import os

    from ..pipelines.folders import generate_to_folders, write_grids
    from ..pipelines.pipeline_coemogen import CoEmoGenPipeline
    from ..taxonomy import Taxonomy

    state = None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # under `accelerate launch`: each process makes its share
        from accelerate import PartialState
        from accelerate.utils import parse_flag_from_env

        state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))  # as Accelerator reads it
    taxonomy = Taxonomy.load(a.taxonomy) if a.taxonomy else None
    device = a.device or (str(state.device) if state is not None else None)
    pipe = CoEmoGenPipeline.from_pretrained(
        a.model, a.pretrained_model_name_or_path, a.clip_model_name_or_path, device, taxonomy
    )
    out = Path(a.out)
    if a.emotion == "all":  # the paper's evaluation set: num_images of every emotion, one folder each
        jobs = [(e, out / e) for e in pipe.taxonomy.emotions]
    else:
        emotions = [e for e in a.emotion.split(";") if e.strip()] or [a.emotion]
        pipe.taxonomy.weights(emotions)  # fail on a bad name or weight before any work
        jobs = [(emotions, out)]
    made = generate_to_folders(
        pipe,
        jobs,
        a.num_images,
        seed=a.seed,
        batch_size=a.batch_size,
        process_index=state.process_index if state is not None else 0,
        num_processes=state.num_processes if state is not None else 1,
        barrier=state.wait_for_everyone if state is not None else None,
        template=a.template,
        num_inference_steps=a.num_inference_steps,
        guidance_scale=a.guidance_scale,
        scheduler=a.scheduler,
        cluster_temperature=a.cluster_temperature,
    )
    if state is None:
        kept = a.num_images * len(jobs) - made
        print(f"wrote {made} images ({kept} already there), metadata and grid.png to {out}")
        return
    state.wait_for_everyone()  # every share written: the main process draws the grids
    if state.is_main_process:
        write_grids([folder for _, folder in jobs])
    print(f"process {state.process_index} of {state.num_processes}: wrote {made} images to {out}")


def cmd_caption(a: argparse.Namespace) -> None:
    import json

    from ..captioning.captioners import make_captioner
    from ..captioning.runner import run_captioning, unfinished_message
    from ..data.manifest import SkipCounter
    from ..data.readers import read_dataset
    from ..tables import format_table
    from ..taxonomy import Taxonomy

    skips = SkipCounter()
    items = read_dataset(a.dataset, Taxonomy.load(a.taxonomy), skips, a.skip_unknown_emotions, a.image_dir)
    if a.split:
        items = [it for it in items if it.split in a.split]
    template = Path(a.prompt_template).read_text(encoding="utf-8") if a.prompt_template else None
    with make_captioner(
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
    ) as captioner:
        summary = run_captioning(items, captioner, a.out, a.shard, skips)
    rows = [{"emotion": e, "written": n} for e, n in sorted(summary["per_emotion"].items())]
    print(format_table(rows, ["emotion", "written"]))
    print(json.dumps({k: v for k, v in summary.items() if k != "per_emotion"}, indent=1))
    if unfinished_message(summary):
        raise CoEmoGenError(unfinished_message(summary))
    if summary["written"] + summary["already_done"] == 0:
        raise CoEmoGenError("no caption could be produced")


def cmd_caption_merge(a: argparse.Namespace) -> None:
    from ..captioning.runner import merge_shards

    print(f"merged {merge_shards(a.parts, a.out)} records into {a.out}")


def cmd_filter(a: argparse.Namespace) -> None:
    from ..captioning.filtering import filter_captions
    from ..data.manifest import first_image
    from ..models.base import resolve_sources

    clip = a.clip_model_name_or_path
    if clip is None or a.preset is not None:  # the SD source is not used: only CLIP must be chosen
        clip = resolve_sources("unused", a.clip_model_name_or_path, a.preset, first_image(a.captions))[1]
    filter_captions(a.captions, a.out, clip, a.drop, a.batch_size, a.device, a.seed)


def cmd_world_judges(a: argparse.Namespace) -> None:
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


def cmd_evaluate(a: argparse.Namespace) -> None:
    from ..evaluation.evaluate import build_metric_networks, evaluate
    from ..evaluation.report import markdown_table
    from ..taxonomy import Taxonomy

    if a.transfer:
        from ..evaluation.emotion_head import emotion_head
        from ..evaluation.transfer import evaluate_transfer

        judge = None
        if a.emotion_classifier:
            judge = emotion_head(a.emotion_classifier, a.emotion_clip, Taxonomy.load(a.taxonomy))
        evaluate_transfer(a.transfer, a.out, a.model, a.num_images, a.seed, judge=judge)
        print(f"wrote {a.out}/transfer.md, transfer.json and grid.png")
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


def cmd_emotion_head(a: argparse.Namespace) -> None:
    import json

    from ..evaluation.emotion_head import train_emotion_head
    from ..taxonomy import Taxonomy

    config = train_emotion_head(
        a.dataset, a.out, a.clip_model_name_or_path, Taxonomy.load(a.taxonomy), a.steps, seed=a.seed
    )
    print(json.dumps(config["accuracy"], indent=1))
    print(f"wrote {a.out}/head.safetensors and config.json")


def cmd_demo(a: argparse.Namespace) -> None:
    from ..experiments.demo import run_demo

    run_demo(a.out, a.quick, a.seed, cluster_temperature=a.cluster_temperature)


def cmd_bench_paper_table(a: argparse.Namespace) -> None:
    from ..experiments.paper_table import paper_table

    paper_table(
        a.out,
        "quick" if a.quick else a.scale,
        a.seeds,
        a.seed,
        a.rows,
        a.num_resamples,
        measure=not a.report_only,
        content=a.content,
    )


def cmd_bench_claims(a: argparse.Namespace) -> None:
    from ..experiments.claims import claims_table

    tables = {}
    for spec in a.table:
        world, sep, folder = spec.partition("=")
        if not sep or not world or not folder:
            raise CoEmoGenError(f"--table takes WORLD=DIR (e.g. narrative=docs/paper-table/narrative), got '{spec}'")
        tables[world] = folder
    print(claims_table(tables, a.out))


def cmd_analyze_timesteps(a: argparse.Namespace) -> None:
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


def cmd_bench_emoart(a: argparse.Namespace) -> None:
    from ..experiments.emoart import run_emoart

    run_emoart(a.out, a.quick, a.seed)


def cmd_export(a: argparse.Namespace) -> None:
    from ..export import export_run, push_to_hub
    from ..tables import format_table

    items = export_run(a.out, a.model, a.emotions, a.num_embeddings, a.seed, a.license, a.metrics)
    rows = [{"emotion": i.spec, "folder": str(i.directory), "LoRA rank": i.rank, "prompt": i.prompt} for i in items]
    print(format_table(rows, ["emotion", "folder", "LoRA rank", "prompt"]))
    if a.push_to_hub:
        print(f"uploaded to {push_to_hub(a.out, a.push_to_hub, a.hub_token, a.private)}")


def cmd_web(a: argparse.Namespace) -> None:
    from ..web import WebLimits, launch

    limits = WebLimits(max_images=a.max_images, max_steps=a.max_steps, concurrency=a.concurrency, max_queue=a.max_queue)
    launch(a.model, limits, a.host, a.port, a.device)


def cmd_study(a: argparse.Namespace) -> None:
    if a.study_command == "create":
        from ..study.design import create_study, parse_methods, parse_questions

        study = create_study(
            parse_methods(a.methods),
            a.out,
            a.design,
            parse_questions(a.questions),
            a.trials_per_participant,
            a.sequences,
            a.repeats,
            a.gold,
            a.gold_trials,
            a.images_per_emotion,
            a.seed,
            a.title,
        )
        steps = len(study.sequences[0])
        print(f"wrote study {study.id} ({len(study.trials)} trials, {steps} screens per participant) to {a.out}")
    elif a.study_command == "serve":
        from ..study.server import serve

        serve(a.study, a.host, a.port, a.database)
    elif a.study_command == "analyze":
        from ..study.analysis import analyze

        results = analyze(a.study, a.out, a.database, a.resamples, a.seed)
        print(f"{results['included']} of {results['participants']} participants included; report in {a.out}")
    else:
        from ..study.simulate import simulate

        stored = simulate(a.study, a.participants, a.seed, a.database)
        print(f"stored {stored} simulated answers")


def cmd_doctor(a: argparse.Namespace) -> None:
    from ..doctor import doctor

    doctor(a.out, a.model, a.preset)
