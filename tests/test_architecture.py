"""What docs/architecture.md claims about the package's shape, as tests: the method does not import
the synthetic world, no import circle runs through training, the command line's help imports no
torch, every registered method trains and loads back, and EmoGen gets the engine's frozen-model
preparation (SDXL's VAE kept in fp32, channels-last, compile)."""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import coemogen
from coemogen.cli import main

PACKAGE = Path(coemogen.__file__).parent
# The method: none of these may import coemogen.world (the world registers itself through coemogen.registry).
METHOD_PACKAGES = ("models", "pipelines", "training", "data", "captioning", "evaluation", "export", "web")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the coemogen modules it imports (at any depth of its code: function-level imports
    count), read from the source with `ast`."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {  # `if TYPE_CHECKING:` imports never run
            id(n)
            for block in ast.walk(tree)
            if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
            for stmt in block.body for n in ast.walk(stmt)
        }  # fmt: skip
        targets = set()
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                submodules = {f"{base}.{a.name}" for a in node.names} & modules.keys()
                targets.update(submodules or {base})  # `from pkg import module` depends on the module
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_method_does_not_import_the_world_and_no_circle_runs_through_training():
    graph = import_graph()
    method = [m for m in graph if m.split(".")[1:2] and m.split(".")[1] in METHOD_PACKAGES]
    into_world = sorted((m, t) for m in method for t in graph[m] if t.startswith("coemogen.world"))
    assert into_world == [], into_world
    found = circles(graph)
    assert not [c for c in found if any(m.startswith("coemogen.training") for m in c)], found
    assert not [c for c in found if any(m.startswith("coemogen.world") for m in c) and
                any(m.split(".")[1] in METHOD_PACKAGES for m in c)], found  # fmt: skip
    # the figures the architecture page quotes (printed with -s)
    print(f"modules {len(graph)}, imports {sum(map(len, graph.values()))}, circles {found}")


@pytest.mark.parametrize(
    "command", [[], ["train"], ["generate"], ["edit"], ["tune"], ["evaluate"], ["export"], ["web"], ["world"]]
)
def test_help_imports_no_torch(command):
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "coemogen.cli", *command, "--help"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert "usage: coemogen" in done.stdout
    assert not imported & {"torch", "diffusers", "transformers", "numpy"}, sorted(imported & {"torch", "numpy"})


@pytest.mark.parametrize("method", ["coemogen", "emogen"])
def test_every_registered_method_trains_and_loads_back(method, tiny_models, tiny_world, tmp_path):
    from coemogen.pipelines.pipeline_coemogen import CoEmoGenPipeline
    from coemogen.training.loop import METHODS

    assert method in METHODS
    out = tmp_path / method
    argv = ["train", "--method", method, "--manifest", str(tiny_world / "manifest.jsonl"), "--out", str(out)]
    argv += ["--pretrained_model_name_or_path", str(tiny_models[0]), "--clip_model_name_or_path", str(tiny_models[1])]
    argv += ["--max_train_steps", "2", "--train_batch_size", "4", "--validation_steps", "0", "--report_to", "none"]
    if method == "emogen":
        argv += ["--emotion_dim", "16", "--mapper_width", "24", "--encoder_epochs", "1", "--encoder_batch_size", "8"]
    assert main(argv) == 0
    assert json.loads((out / "config.json").read_text())["method"] == method
    pipe = CoEmoGenPipeline.from_pretrained(out, device="cpu")
    assert pipe.model.config.method == method
    images = pipe("awe", num_images=1, seed=0, num_inference_steps=2).images
    assert images[0].size == (32, 32)


def test_emogen_gets_the_engines_frozen_model_preparation(tiny_sdxl_models, tiny_world, tmp_path):
    """--method emogen with bf16 on SDXL keeps the VAE in fp32; --channels_last and --compile_unet
    reach its U-Net (they were silently ignored by EmoGen's own engine)."""
    from coemogen.taxonomy import Taxonomy
    from coemogen.training.config import TrainingArguments
    from coemogen.training.loop import build, make_accelerator

    args = TrainingArguments(
        manifest=str(tiny_world / "manifest.jsonl"), out=str(tmp_path), method="emogen",
        pretrained_model_name_or_path=str(tiny_sdxl_models[0]), clip_model_name_or_path=str(tiny_sdxl_models[1]),
        mixed_precision="bf16", channels_last=True, compile_unet=True, report_to="none",
    )  # fmt: skip
    run, _ = build(args, Taxonomy.default(), make_accelerator(args), emotion_dim=16, mapper_width=24,
                   encoder_epochs=1, encoder_batch_size=8)  # fmt: skip
    assert run.base.vae.dtype == torch.float32 and run.base.vae_in_fp32
    assert {e.dtype for e in run.base.text_encoders} == {torch.bfloat16}
    assert run.base.unet.conv_in.weight.dtype == torch.bfloat16
    assert run.base.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert run.base.unet._compiled_call_impl is not None  # nn.Module.compile() in place
    assert {p.dtype for p in run.params.values()} == {torch.float32}  # the mapper stays fp32 for AdamW


def test_every_multi_word_flag_answers_to_both_spellings(tmp_path):
    from coemogen.cli.parser import build_parser

    parser = build_parser()
    a = parser.parse_args(
        ["generate", "--emotion", "awe", "--out", "o", "--num-inference-steps", "3", "--guidance-scale", "2"]
    )
    b = parser.parse_args(
        ["generate", "--emotion", "awe", "--out", "o", "--num_inference_steps", "3", "--guidance_scale", "2"]
    )
    assert vars(a) == vars(b) and a.num_inference_steps == 3 and a.guidance_scale == 2
    t = parser.parse_args(["train", "--manifest", "m", "--out", "o", "--max-train-steps", "5", "--lora-rank", "2"])
    assert t.max_train_steps == 5 and t.lora_rank == 2
    e = parser.parse_args(["evaluate", "--out", "o", "--clip-model-name-or-path", "c", "--num_pairs", "4"])
    assert e.clip_model_name_or_path == "c" and e.num_pairs == 4


def test_the_research_helpers_are_commands(tmp_path):
    assert main(["world", "sheet", "--out", str(tmp_path / "relations.png")]) == 0
    assert (tmp_path / "relations.png").stat().st_size > 0


def test_every_model_family_attribute_is_read_outside_the_families():
    """What a family declares is used: each attribute and method of `ModelFamily` is read by some
    module of the package outside `models/families/`."""
    from coemogen.models.families.base import ModelFamily

    names = {n for n in vars(ModelFamily) if not n.startswith("_")} | set(ModelFamily.required)
    names -= {"required"}  # the registration check's own list
    source = "\n".join(p.read_text(encoding="utf-8") for p in PACKAGE.rglob("*.py") if "families" not in p.parts)
    unread = sorted(n for n in names if not re.search(rf"family\.{n}\b", source))
    assert unread == [], unread
