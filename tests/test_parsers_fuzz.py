"""Property-based tests of every parser users touch: each input parses to what it means or gives a
CoEmoGenError (a clear message); nothing else escapes (no traceback)."""

import csv
import io
import json
import math
import re
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from coemogen.captioning.captioners import build_prompt, check_prompt_template
from coemogen.captioning.runner import parse_shard
from coemogen.data.manifest import SkipCounter, read_manifest
from coemogen.data.readers import read_dataset, read_emoset
from coemogen.errors import CoEmoGenError
from coemogen.models.conditioning import check_template
from coemogen.taxonomy import Taxonomy

TAX = Taxonomy.default()
# No example database: nothing is written into the checkout; the seeds vary from run to run.
EXAMPLES = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
FILE_EXAMPLES = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
emotion_names = st.sampled_from(TAX.emotions)
# Names as users type them: any case, stray spaces.
typed_names = st.tuples(emotion_names, st.sampled_from([str.lower, str.upper, str.title]), st.sampled_from(["", " "]))
weights = st.one_of(st.integers(0, 1000).map(str), st.floats(0, 1e6, allow_nan=False).map(repr))
junk = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)

WORK = Path(tempfile.mkdtemp(prefix="coemogen-fuzz-"))  # one folder reused by every example


def _write(name: str, data: bytes) -> Path:
    path = WORK / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _parses_or_clear_error(parse, *args):
    try:
        return parse(*args)
    except CoEmoGenError as err:
        assert str(err)  # a message to print
        return None


# Emotion names and mixing strings.


@EXAMPLES
@given(st.lists(st.tuples(typed_names, weights), min_size=1, max_size=8, unique_by=lambda x: x[0][0]))
def test_well_formed_mixes_parse_to_their_normalised_weights(parts):
    spec = ",".join(f"{pad}{case(name)}{pad}:{w}" for (name, case, pad), w in parts)
    total = sum(float(w) for _, w in parts)
    if total == 0:
        with pytest.raises(CoEmoGenError, match="weights sum to"):
            TAX.parse_mix(spec)
        return
    mix = TAX.parse_mix(spec)
    assert mix == pytest.approx({name: float(w) / total for (name, _, _), w in parts})
    assert math.isclose(sum(mix.values()), 1.0)


@EXAMPLES
@given(st.one_of(junk, st.lists(st.one_of(emotion_names, junk, weights), max_size=6).map(":,".join)))
def test_any_mix_string_parses_to_a_distribution_or_a_clear_error(spec):
    mix = _parses_or_clear_error(TAX.parse_mix, spec)
    if mix is not None:
        assert set(mix) <= set(TAX.emotions) and all(0 <= w <= 1 for w in mix.values())
        assert math.isclose(sum(mix.values()), 1.0)


@EXAMPLES
@given(st.sampled_from(["inf", "-1", "nan", "1e400", "-0.5", "x", ""]), emotion_names)
def test_non_finite_or_negative_weights_are_refused(weight, name):
    with pytest.raises(CoEmoGenError, match="malformed emotion mix"):
        TAX.parse_mix(f"{name}:{weight}")


# Taxonomy files (JSON and YAML).

groups = st.dictionaries(
    st.from_regex(r"[A-Za-z][A-Za-z0-9 _-]{0,9}", fullmatch=True),
    st.lists(st.from_regex(r"[a-z][a-z ]{0,10}[a-z]", fullmatch=True), min_size=1, max_size=4),
    min_size=1,
    max_size=4,
)


@FILE_EXAMPLES
@given(groups, st.sampled_from(["json", "yaml"]), st.booleans())
def test_taxonomy_files_parse_to_their_groups(data, kind, bom):
    names = [e for es in data.values() for e in es]
    assume(len(names) == len(set(names)))
    text = json.dumps({"groups": data}) if kind == "json" else yaml.safe_dump({"groups": data}, allow_unicode=True)
    path = _write(f"taxonomy.{kind}", ("\ufeff" if bom else "").encode() + text.encode())
    taxonomy = Taxonomy.load(path)
    assert taxonomy.to_dict()["groups"] == data


@FILE_EXAMPLES
@given(
    st.one_of(
        st.binary(max_size=200),
        junk.map(str.encode),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=8),
            lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
            max_leaves=12,
        ).map(lambda v: json.dumps({"groups": v}).encode()),
    ),
    st.sampled_from(["json", "yaml", "yml"]),
)
def test_any_taxonomy_file_parses_or_is_a_clear_error(data, suffix):
    taxonomy = _parses_or_clear_error(Taxonomy.load, _write(f"t.{suffix}", data))
    if taxonomy is not None:
        assert taxonomy.num_emotions >= 1 and len(set(taxonomy.emotions)) == taxonomy.num_emotions
        assert all(e == e.strip().lower() and not set(e) & set(",:;") for e in taxonomy.emotions)


# Manifests: JSONL (training manifest and dataset tables) and CSV, with BOMs, CRLF, quoting, long lines.

captions = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=300).filter(
    str.strip
)
records = st.lists(st.tuples(emotion_names, captions, st.integers(0, 10**6)), min_size=1, max_size=6)


def _images(n: int) -> list[str]:
    for k in range(n):
        if not (WORK / "img" / f"{k}.png").exists():
            _write(f"img/{k}.png", b"not decoded by the parser")
    return [f"img/{k}.png" for k in range(n)]


@FILE_EXAMPLES
@given(records, st.booleans(), st.sampled_from(["\n", "\r\n"]), st.integers(0, 3))
def test_jsonl_manifest_lines_parse_to_their_records(rows, bom, newline, long_line):
    images = _images(len(rows))
    lines = [json.dumps({"image": i, "emotion": e, "caption": c, "n": n}) for i, (e, c, n) in zip(images, rows)]
    if long_line:
        lines.append(json.dumps({"image": images[0], "emotion": "awe", "caption": "x" * 200_000 * long_line}))
    data = ("\ufeff" if bom else "") + newline.join(lines) + newline
    parsed = read_manifest(_write("m.jsonl", data.encode()), TAX)
    expected = [(WORK / i, e, c.strip()) for i, (e, c, _) in zip(images, rows)]
    assert [(r.image, r.emotion, r.caption) for r in parsed[: len(rows)]] == expected
    assert len(parsed) == len(rows) + (1 if long_line else 0)


@FILE_EXAMPLES
@given(records, st.booleans(), st.sampled_from(["\n", "\r\n"]), st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
def test_csv_dataset_tables_parse_to_their_rows(rows, bom, newline, quoting):
    images = _images(len(rows))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=newline, quoting=quoting)
    writer.writerow(["path", "emotion", "note"])
    for image, (emotion, caption, _) in zip(images, rows):
        # Captions with quotes, commas and newlines (a bare CR in an unquoted field is ambiguous in any CSV).
        writer.writerow([image, emotion.upper(), caption.replace("\r", "")])
    path = _write("table.csv", ("\ufeff" if bom else "").encode() + buffer.getvalue().encode())
    items = read_dataset(path, TAX, skip_unknown=True)
    assert [(it.path, it.emotion) for it in items] == [(WORK / i, e) for i, (e, _, _) in zip(images, rows)]
    assert [it.attributes["note"] for it in items] == [c.replace("\r", "") for _, c, _ in rows]


@FILE_EXAMPLES
@given(st.binary(max_size=400), st.sampled_from(["m.jsonl", "m.csv"]))
def test_any_manifest_bytes_parse_or_are_a_clear_error(data, name):
    path = _write(name, data)
    skips = SkipCounter()
    for parse in (lambda: read_dataset(path, TAX, skips, skip_unknown=True), lambda: read_manifest(path, TAX, skips)):
        for record in _parses_or_clear_error(parse) or []:
            assert record.emotion in TAX.emotions


@FILE_EXAMPLES
@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(["image", "path", "emotion", "caption", "id"]),
            st.one_of(
                st.none(), st.integers(), st.text(max_size=8), st.lists(st.integers(), max_size=2), emotion_names
            ),
        )
        | st.integers()
        | st.lists(st.text(max_size=3), max_size=2),
        max_size=5,
    )
)
def test_manifest_lines_of_any_json_type_are_counted_skips(rows):
    path = _write("typed.jsonl", "\n".join(json.dumps(r) for r in rows).encode())
    skips = SkipCounter()
    items = read_dataset(path, TAX, skips, skip_unknown=True)
    records = read_manifest(path, TAX, SkipCounter(), check_files=False)
    assert len(items) + skips.total <= len(rows) and len(records) <= len(rows)


# EmoSet split files: 3 and 4 fields, wrong types.

split_field = st.one_of(
    st.text(max_size=12), st.integers(), st.none(), st.booleans(), st.lists(st.integers(), max_size=2)
)


@FILE_EXAMPLES
@given(
    st.one_of(
        st.lists(st.lists(split_field, min_size=2, max_size=5), max_size=6),
        st.lists(st.tuples(emotion_names, st.integers(0, 99)), max_size=6).map(
            lambda rs: [[e, f"image/{e}/{e}_{n:05d}.jpg", f"annotation/{e}/{e}_{n:05d}.json"] for e, n in rs]
        ),
        st.lists(st.tuples(emotion_names, st.integers(0, 99)), max_size=6).map(
            lambda rs: [[e, f"id{n}", f"image/{e}/{n}.jpg", f"annotation/{e}/{n}.json"] for e, n in rs]
        ),
        split_field,
        st.dictionaries(st.text(max_size=4), split_field, max_size=3),
    )
)
def test_emoset_split_files_parse_or_are_a_clear_error(records):
    root = WORK / "emoset"
    _write("emoset/train.json", json.dumps(records).encode())
    skips = SkipCounter()
    items = _parses_or_clear_error(read_emoset, root, TAX, skips, True)
    if items is None:
        assert not isinstance(records, list)
        return
    well_formed = [
        r for r in records if isinstance(r, list) and len(r) in (3, 4) and all(isinstance(f, str) for f in r)
    ]
    for item in items:
        assert item.emotion in TAX.emotions and item.split == "train" and item.path.is_relative_to(root)
    if all(r and r[0] in TAX.emotions for r in well_formed):
        assert len(items) == len({(r[1] if len(r) == 4 else Path(r[-2]).stem) for r in well_formed})


# Prompt templates: the generation placeholder "{}" and the captioning "{emotion}".


@EXAMPLES
@given(st.text(max_size=30), st.integers(0, 3))
def test_generation_templates_need_exactly_one_placeholder(text, placeholders):
    template = text.replace("{}", "") + "{}" * placeholders
    if placeholders == 1:
        assert check_template(template) == template
    else:
        with pytest.raises(CoEmoGenError, match="exactly one"):
            check_template(template)


@EXAMPLES
@given(st.text(max_size=30), st.integers(0, 3), st.booleans(), emotion_names)
def test_caption_templates_name_the_emotion_or_are_refused(text, placeholders, prior, emotion):
    template = text.replace("{emotion}", "") + " {emotion}" * placeholders
    if prior and placeholders == 0:
        with pytest.raises(CoEmoGenError, match="no \\{emotion\\} placeholder"):
            check_prompt_template(template, prior)
        return
    prompt = build_prompt(emotion, check_prompt_template(template, prior), prior)
    assert "{emotion}" not in prompt and prompt.count(emotion) >= (placeholders if prior else 0)


# --shard k/n.


@EXAMPLES
@given(st.one_of(st.tuples(st.integers(-3, 40), st.integers(-3, 40)).map(lambda kn: f"{kn[0]}/{kn[1]}"), junk))
def test_shard_specs_parse_to_a_valid_shard_or_a_clear_error(spec):
    shard = _parses_or_clear_error(parse_shard, spec)
    if re.fullmatch(r"\d+/\d+", spec) and int(spec.split("/")[0]) < int(spec.split("/")[1]):
        assert shard == tuple(int(x) for x in spec.split("/"))
    elif shard is not None:
        assert 0 <= shard[0] < shard[1]
