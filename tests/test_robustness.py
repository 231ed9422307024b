"""Nothing lost, nothing let in: transient faults retried until the job is done, safe loading of
runs, clear errors on a full disk or a read-only folder, `coemogen doctor` and the tested versions."""

import copy
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from coemogen.captioning.captioners import Captioner, HFCaptioner, OpenAICaptioner
from coemogen.captioning.runner import run_captioning, unfinished_message
from coemogen.data.readers import DatasetItem
from coemogen.errors import CoEmoGenError
from coemogen.io import _cgroup_available, _meminfo_available, read_safetensors
from coemogen.models.coemogen import load_run
from coemogen.testing import ChatCompletionsServer
from coemogen.world.paths import POCKET_SD, SHIPPED_RUN

ROOT = Path(__file__).parent.parent
CLI = [sys.executable, "-m", "coemogen.cli"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _image(path: Path, size: int = 16, color=(200, 40, 40)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), color).save(path)
    return path


# 1. Transient faults finish the job.


def test_every_transient_fault_is_retried_until_the_caption_comes(tmp_path):
    item = DatasetItem("a", _image(tmp_path / "a.jpg"), "awe")
    script = {0: "malformed", 1: "truncated", 2: "error-body", 3: "reset", 4: 503, 5: "slow"}
    with ChatCompletionsServer(script=script, slow_seconds=1.0) as server:
        result = OpenAICaptioner(server.url, timeout=0.3, max_retries=6, backoff=0.01).caption([item])[0]
    assert result.caption.startswith("a caption of image") and not result.transient
    assert server.requests == 7  # six faults, one after another, then the answer


def test_faults_outlasting_the_retries_are_transient_and_a_rerun_retries_them(tmp_path):
    items = [
        DatasetItem("a", _image(tmp_path / "a.jpg"), "awe"),
        DatasetItem("b", _image(tmp_path / "b.jpg", color=(0, 90, 200)), "fear"),
        DatasetItem("c", tmp_path / "missing.jpg", "awe"),
    ]
    out = tmp_path / "caps.jsonl"
    with ChatCompletionsServer(script={0: "truncated", 1: "error-body"}) as server:
        summary = run_captioning(items, OpenAICaptioner(server.url, concurrency=1, max_retries=1, backoff=0.01), out)
    assert (summary["written"], summary["failed"], summary["skipped"]) == (1, 1, 1)
    assert summary["skip_reasons"] == {"file not found": 1}  # permanent: a re-run will not fix it
    assert "1 items failed on server or memory errors" in unfinished_message(summary)
    assert "re-run the same command" in unfinished_message(summary)
    with ChatCompletionsServer() as server:
        again = run_captioning(items, OpenAICaptioner(server.url, concurrency=1, backoff=0.01), out)
    assert (again["already_done"], again["written"], again["failed"]) == (1, 1, 0)
    assert unfinished_message(again) is None
    assert sorted(json.loads(line)["id"] for line in out.read_text().splitlines()) == ["a", "b"]


def test_an_empty_caption_is_retried_and_permanent_after_the_budget(tmp_path):
    item = DatasetItem("a", _image(tmp_path / "a.jpg"), "awe")
    with ChatCompletionsServer(script={0: "empty"}) as server:
        assert OpenAICaptioner(server.url, max_retries=1, backoff=0.01).caption([item])[0].caption
    with ChatCompletionsServer(script={0: "empty", 1: "empty"}) as server:
        result = OpenAICaptioner(server.url, max_retries=1, backoff=0.01).caption([item])[0]
    assert (result.caption, result.error, result.transient) == (None, "empty caption", False)


@pytest.mark.slow
def test_killed_caption_run_against_a_flaky_server_then_rerun_captions_every_usable_image_once(tiny_world, tmp_path):
    world = tmp_path / "world"
    shutil.copytree(tiny_world, world)
    broken = {"awe_00001": b"", "fear_00002": b"\xff\xd8\xff\xe0 cut short"}  # unusable images
    for image_id, data in broken.items():
        (world / "image" / image_id.split("_")[0] / f"{image_id}.jpg").write_bytes(data)
    out = tmp_path / "caps.jsonl"
    # Every 3rd request fails, in turn in every way a server fails.
    failures = (500, 429, "malformed", "truncated", "error-body", "reset", "slow")
    with ChatCompletionsServer(latency=0.02, fail_every=3, failures=failures, slow_seconds=1.0) as server:
        cmd = [*CLI, "caption", "--dataset", str(world), "--captioner", f"openai:{server.url}"]
        cmd += ["--concurrency", "4", "--timeout", "0.5", "--out", str(out)]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
        deadline = time.time() + 60
        while time.time() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 6):
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert 6 <= len(out.read_text().splitlines()) < 30
        rerun = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
        injected = sum(server.fault(n) is not None for n in range(server.requests))
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    usable = {p.stem for p in (world / "image").rglob("*.jpg")} - set(broken)
    assert len(ids) == len(set(ids)) == 30 and set(ids) == usable
    assert injected >= 10


def test_hf_captioner_out_of_memory_retries_smaller_batches_then_one_at_a_time(tmp_path):
    captioner = HFCaptioner.__new__(HFCaptioner)  # no model: generation is replaced below
    Captioner.__init__(captioner)
    captioner.processor = SimpleNamespace(apply_chat_template=lambda messages, add_generation_prompt: "prompt")
    sizes = [5, 6, 7, 9]  # the 9-pixel image does not fit even alone
    items = [DatasetItem(str(s), _image(tmp_path / f"{s}.png", size=s), "awe") for s in sizes]
    batches = []

    def generate_batch(images, prompts):
        batches.append(len(images))
        if len(images) > 1 or images[0].size == (9, 9):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [f"caption of {images[0].size[0]}"]

    captioner._generate_batch = generate_batch
    results = captioner.caption(items)
    assert batches == [4, 2, 1, 1, 2, 1, 1]
    assert [r.caption for r in results[:3]] == ["caption of 5", "caption of 6", "caption of 7"]
    assert results[3].caption is None and results[3].transient and "out of memory" in results[3].error

    def broken(images, prompts):
        raise RuntimeError("shape mismatch")  # not a memory fault: not hidden

    captioner._generate_batch = broken
    with pytest.raises(RuntimeError, match="shape mismatch"):
        captioner.caption(items[:1])


# 5. Safe loading.


@pytest.fixture(scope="module")
def pocket_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(POCKET_SD, subfolder="unet")


@pytest.fixture
def run_copy(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(SHIPPED_RUN, run)
    return run


def test_shipped_run_loads_and_a_pickle_where_weights_are_expected_is_refused(run_copy, pocket_unet):
    model, clusters = load_run(run_copy, copy.deepcopy(pocket_unet))
    assert clusters is not None and model.taxonomy.num_emotions == 8
    state = load_file(run_copy / "mapper.safetensors")
    (run_copy / "mapper.safetensors").unlink()
    torch.save(state, run_copy / "mapper.bin")
    with pytest.raises(CoEmoGenError, match=r"holds mapper\.bin: pickle-format"):
        load_run(run_copy, copy.deepcopy(pocket_unet))
    (run_copy / "mapper.bin").rename(run_copy / "mapper.safetensors")  # a pickle under the expected name
    with pytest.raises(CoEmoGenError, match=r"mapper\.safetensors is a pickle"):
        load_run(run_copy, copy.deepcopy(pocket_unet))


@pytest.mark.parametrize(
    "damage, message",
    [
        ("shape", r"tensor '.*' has shape \(\d+, \d+\), this model needs"),
        ("nan", "holds NaN or infinite values"),
        ("inf", "holds NaN or infinite values"),
        ("missing-key", "does not fit this model"),
    ],
)
def test_hostile_weights_are_clear_errors(run_copy, pocket_unet, damage, message):
    path = run_copy / "hilora.safetensors"
    state = load_file(path)
    key = sorted(state)[0]
    if damage == "shape":
        state[key] = state[key][:, :-1].contiguous()
    elif damage in ("nan", "inf"):
        state[key][0, 0] = float(damage)
    else:
        del state[key]
    save_file(state, path)
    with pytest.raises(CoEmoGenError, match=message):
        load_run(run_copy, copy.deepcopy(pocket_unet))


def test_a_config_asking_for_huge_tensors_is_refused_before_allocating(run_copy, pocket_unet):
    config = json.loads((run_copy / "config.json").read_text())
    config["mapper_hidden_dim"] = 10**9  # 10^9 x 8 floats and 10^9 x 128: terabytes if built
    (run_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(CoEmoGenError, match=r"mapper.safetensors tensor '.*' has shape"):
        load_run(run_copy, copy.deepcopy(pocket_unet))
    (run_copy / "config.json").write_text("{not json")
    with pytest.raises(CoEmoGenError, match="config.json is not valid JSON"):
        load_run(run_copy, copy.deepcopy(pocket_unet))


def test_a_tensor_larger_than_memory_is_refused_from_its_header(tmp_path):
    """A header declaring a 4 TB tensor over a sparse file: refused before any data is read."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [2**20, 2**20], "data_offsets": [0, 4 * 2**40]}}).encode()
    path = tmp_path / "huge.safetensors"
    with open(path, "wb") as f:
        f.write(len(header).to_bytes(8, "little") + header)
        f.truncate(8 + len(header) + 4 * 2**40)
    with pytest.raises(CoEmoGenError, match=r"declares 4398.05 GB of tensors and this process has .* GB of memory"):
        read_safetensors(path)


def _fake_memory(tmp_path, monkeypatch, free_kb: int, available_kb: int, cgroup: tuple[str, int, int] | None = None):
    """/proc/meminfo (and a cgroup v2 folder) as a loaded machine shows them: `free_kb` free,
    `available_kb` available (free plus reclaimable page cache)."""
    import coemogen.io as io_module

    tmp_path.mkdir(exist_ok=True)
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(f"MemTotal: 24000000 kB\nMemFree: {free_kb} kB\nMemAvailable: {available_kb} kB\n")
    root = tmp_path / "cgroup"
    root.mkdir()
    if cgroup:
        limit, usage, inactive_file = cgroup
        (root / "memory.max").write_text(f"{limit}\n")
        (root / "memory.current").write_text(f"{usage}\n")
        (root / "memory.stat").write_text(f"anon 1\ninactive_file {inactive_file}\n")
    monkeypatch.setattr(io_module, "_meminfo_available", lambda: _meminfo_available(str(meminfo)))
    monkeypatch.setattr(io_module, "_cgroup_available", lambda: _cgroup_available(str(root)))
    # the free-memory figure the guard must not use: far too small for the file
    monkeypatch.setattr(os, "sysconf", lambda name: 1 if name == "SC_AVPHYS_PAGES" else 4096)


def _weights_file(tmp_path) -> Path:
    path = tmp_path / "hilora.safetensors"
    save_file({"w": torch.ones(256, 1024)}, path)  # 1 MB
    return path


def test_the_memory_guard_reads_available_memory_not_free_memory(tmp_path, monkeypatch):
    path = _weights_file(tmp_path)
    # 100 kB free but 8 GB available (a full page cache): the file loads
    _fake_memory(tmp_path, monkeypatch, free_kb=100, available_kb=8_000_000)
    assert read_safetensors(path)["w"].shape == (256, 1024)


def test_the_memory_guard_refuses_with_what_it_knows_when_memory_is_really_short(tmp_path, monkeypatch):
    path = _weights_file(tmp_path)
    _fake_memory(tmp_path, monkeypatch, free_kb=100, available_kb=500)  # 0.5 MB available for a 1 MB file
    with pytest.raises(CoEmoGenError, match=r"declares 0.00 GB of tensors and this process has 0.00 GB") as err:
        read_safetensors(path)
    assert "not a file this model wrote" not in str(err.value) and "hilora.safetensors" in str(err.value)


def test_the_memory_guard_honours_a_cgroup_limit_counting_its_cache_as_reclaimable(tmp_path, monkeypatch):
    path = _weights_file(tmp_path)
    # the machine has 8 GB available, the container 2 MB under its limit once its 1.5 MB of cache is reclaimed
    _fake_memory(tmp_path, monkeypatch, 100, 8_000_000, cgroup=(10_000_000, 9_500_000, 1_500_000))
    assert read_safetensors(path)["w"].numel() == 256 * 1024
    _fake_memory(tmp_path / "tight", monkeypatch, 100, 8_000_000, cgroup=(10_000_000, 9_900_000, 100_000))
    with pytest.raises(CoEmoGenError, match="memory available"):
        read_safetensors(path)


# 3. Disk full and unwritable outputs.


@contextmanager
def _file_size_limit(limit: int):
    """RLIMIT_FSIZE for this process (Python ignores SIGXFSZ: a write past it fails with EFBIG)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def _assert_nothing_half_written(folder: Path) -> None:
    """Every file that looks complete is: images decode, JSON parses, no temporary is left."""
    for path in folder.rglob("*"):
        assert ".tmp-" not in path.name, path
        if path.suffix in (".png", ".jpg"):
            Image.open(path).load()
        elif path.suffix == ".json":
            json.loads(path.read_text())


@pytest.mark.parametrize("command", ["world", "generate"])
def test_file_size_limit_stops_with_a_clear_error_and_a_rerun_resumes(command, tmp_path, capsys):
    from coemogen.cli import main

    out = tmp_path / "out"
    if command == "world":
        argv = ["world", "build", "--images-per-emotion", "3", "--size", "32", "--out", str(out)]
        limit = 4096  # the images fit, the split files do not
    else:
        argv = ["generate", "--emotion", "awe", "--num-images", "3", "--steps", "2", "--out", str(out)]
        limit = 10_000  # the 3 images (6.5 kB each) fit, the grid does not
    with _file_size_limit(limit):
        code = main(argv)
    error = capsys.readouterr().err
    assert code == 2 and f"coemogen: error: could not write {out}" in error and "File too large" in error
    assert "free some space (or raise the file-size limit) and re-run the same command" in error
    _assert_nothing_half_written(out)
    assert main(argv) == 0
    _assert_nothing_half_written(out)
    if command == "generate":
        assert "wrote 0 images (3 already there)" in capsys.readouterr().out  # kept, not made again
    else:
        assert json.loads((out / "info.json").read_text())["world"]["images_per_emotion"] == 3


def test_read_only_output_folder_is_a_clear_error(tmp_path, capsys):
    from coemogen.cli import main

    out = tmp_path / "ro"
    out.mkdir()
    if os.geteuid() == 0:  # root writes through permissions: a read-only mount instead
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(out)]).returncode:
            pytest.skip("cannot mount a read-only folder here")
    else:
        out.chmod(0o555)
    try:
        code = main(["world", "build", "--images-per-emotion", "1", "--size", "32", "--out", str(out / "w")])
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(out)])
        out.chmod(0o755)
    error = capsys.readouterr().err
    assert code == 2 and f"could not write {out / 'w'}" in error and "choose a writable output folder" in error


# 7-8. `coemogen doctor` and the tested versions.


def test_doctor_reports_each_check_and_says_how_to_fix_failures(tmp_path, capsys, monkeypatch):
    from coemogen.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["doctor", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    for check in ("device", "torch", "diffusers", "transformers", "accelerate", "hub", "disk space", "write access"):
        assert f"| {check} " in text
    assert "offline mode (HF_HUB_OFFLINE=1)" in text and "coemogen:pocket-sd: local directory" in text
    # The paper's preset offline, with no local copy: each base model is a failure with the command that fixes it.
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    assert main(["doctor", "--preset", "sd15", "--out", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert "hf download stable-diffusion-v1-5/stable-diffusion-v1-5 --local-dir DIR" in captured.out
    assert "2 check(s) failed" in captured.err


def test_doctor_warns_outside_the_tested_release_series(monkeypatch):
    from coemogen import doctor

    monkeypatch.setattr(doctor, "_installed", lambda name: {"diffusers": "0.43.0"}.get(name, doctor.TESTED[name]))
    checks = {c.name: c for c in doctor.check_versions()}
    assert checks["diffusers"].status == "warn" and "outside the tested 0.42.x series" in checks["diffusers"].detail
    assert 'pip install "diffusers==0.42.1"' in checks["diffusers"].fix
    assert checks["torch"].status == "ok"


def test_doctor_tested_versions_are_the_ci_constraints():
    from coemogen.doctor import TESTED

    pins = dict(
        line.split("==")
        for line in (ROOT / ".ci" / "constraints.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert {name: pins[name] for name in TESTED} == TESTED
