"""`coemogen study`: the design decided at creation, the API's refusals, a real server process
under 20 concurrent participants, SIGKILL and restart (SQLite, and two processes on one real
PostgreSQL), a headless-Chromium participant, and the statistics against hand computations."""

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from math import comb
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from coemogen.errors import CoEmoGenError
from coemogen.study.analysis import (
    analyze,
    binomial_p,
    bradley_terry,
    krippendorff_alpha_nominal,
    wilson_interval,
)
from coemogen.study.design import Study, create_study, parse_methods, parse_questions
from coemogen.study.server import RequestError, StudyService, make_server
from coemogen.study.store import Store, database_url

pytest.importorskip("sqlalchemy")

EMOTIONS = ("amusement", "fear")


def _write_method(folder: Path, shade: int, count: int = 4) -> Path:
    for emotion in EMOTIONS:
        (folder / emotion).mkdir(parents=True)
        for i in range(count):
            stem = folder / emotion / f"{emotion}_{i:04d}"
            Image.new("RGB", (8, 8), (shade, 20 * i, 90)).save(stem.with_suffix(".png"))
            stem.with_suffix(".json").write_text(json.dumps({"emotion": emotion, "index": i}))
    return folder


@pytest.fixture(scope="module")
def method_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("methods")
    return {name: _write_method(root / name, shade) for name, shade in (("A", 30), ("B", 130), ("C", 230))}


def _paired(method_dirs, out, **changes) -> Study:
    options = dict(trials_per_participant=8, sequences=30, repeats=2, gold=method_dirs["C"], gold_trials=1, seed=5)
    options.update(changes)
    return create_study({"A": method_dirs["A"], "B": method_dirs["B"]}, out, **options)


@pytest.fixture
def study(method_dirs, tmp_path) -> Study:
    """Paired A vs B: 2 questions x 2 emotions x 4 pairs = 16 trials; 8 + 2 repeats + 1 gold = 11 screens."""
    return _paired(method_dirs, tmp_path / "study")


def _service(study: Study, url: str | None = None) -> StudyService:
    return StudyService(study, Store(database_url(study.root, url), study.id))


def test_create_balances_sides_places_checks_and_is_decided_by_the_seed(method_dirs, tmp_path, study):
    assert len(study.trials) == 17 and study.trials["g0000"]["kind"] == "gold"
    gold = study.trials["g0000"]
    assert study.images[gold["answer"]]["emotion"] == gold["emotion"]
    assert study.images[gold["options"][1]]["emotion"] != gold["emotion"]  # the other polarity's emotion
    shown = Counter()
    for steps in study.sequences:
        assert len(steps) == 11
        main = [s for s in steps if s["check"] is None]
        assert len(main) == 8 and len({s["trial"] for s in main}) == 8
        assert Counter(tuple(s["order"]) for s in main) == {(0, 1): 4, (1, 0): 4}  # sides balanced per person
        assert [s["check"] for s in steps].count("gold") == 1
        for i, s in enumerate(steps):
            if s["check"] == "repeat":
                first = next(j for j, t in enumerate(steps) if t["trial"] == s["trial"] and t["check"] is None)
                assert i - first >= 4 and s["order"] == steps[first]["order"][::-1]
        shown.update(s["trial"] for s in main)
    assert set(shown.values()) == {15}  # 30 sequences x 8 trials over 16 trials: each shown equally often
    assert not list(tmp_path.glob("*.tmp-*"))
    assert len(list((study.root / "images").iterdir())) == len(study.images) == 16 + 2
    again = _paired(method_dirs, tmp_path / "again")
    other = _paired(method_dirs, tmp_path / "other", seed=6)
    assert again.sequences == study.sequences and again.trials == study.trials
    assert other.sequences != study.sequences
    assert again.id != study.id  # two studies of one seed keep apart in a shared database


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda d, out: create_study({"A": d["A"]}, out), "at least two methods"),
        (lambda d, out: create_study({"A": d["A"], "B": d["B"]}, out, design="ranked"), "unknown design 'ranked'"),
        (lambda d, out: create_study({"A": d["A"], "B": out / "nowhere"}, out / "s"), "method B: .* is not a folder"),
        (lambda d, out: _paired(d, out, trials_per_participant=17), "17 trials per participant but the study has 16"),
        (lambda d, out: _paired(d, out, repeats=9), "9 repeated trials need at least as many trials"),
        (lambda d, out: parse_methods(["A"]), "NAME=IMAGE_DIR"),
        (lambda d, out: parse_methods(["../x=dir"]), "method name '../x'"),
        (lambda d, out: parse_questions(["q=Which {colour}?"]), "only placeholder allowed is {emotion}"),
    ],
)
def test_create_refuses_bad_input(method_dirs, tmp_path, call, message):
    with pytest.raises(CoEmoGenError, match=message):
        call(method_dirs, tmp_path)
    assert not list(tmp_path.glob("*.tmp-*")) and not (tmp_path / "study.json").exists()


def test_create_refuses_a_folder_that_holds_a_study(method_dirs, study):
    with pytest.raises(CoEmoGenError, match="exists and is not empty"):
        _paired(method_dirs, study.root)


def _answer(state: dict, index: int = 0, **changes) -> dict:
    payload = {"participant": state["participant"], "step": state["step"], "trial": state["trial"]}
    payload["choice"] = state["images"][index]["id"]
    return {**payload, **changes}


def test_the_service_refuses_forged_replayed_and_unknown_answers_and_writes_nothing(study):
    service = _service(study)
    state = service.start({"participant": "p1"})
    other = service.start({"participant": "p2"})
    answer = _answer(state)
    refused = [
        ({**answer, "participant": "ghost"}, 404, "unknown participant ghost"),
        ({**answer, "participant": "../../etc"}, 400, "participant ids are 1-64 letters"),
        ({**answer, "trial": other["trial"] if other["trial"] != state["trial"] else "t9999"}, 400, "another trial"),
        ({**answer, "choice": "i9999"}, 400, "'i9999' is not one of the images on screen 1"),
        ({**answer, "choice": "../study.json"}, 400, "is not one of the images"),
        ({**answer, "step": 11}, 404, "there is no screen 12"),
        ({**answer, "step": True}, 400, "step must be a whole number"),
        ({**answer, "rt_ms": -5}, 400, "rt_ms must be a whole number"),
        ({**answer, "path": "/etc/passwd"}, 400, "unexpected fields: path"),
    ]
    for payload, status, message in refused:
        with pytest.raises(RequestError, match=message) as caught:
            service.answer(payload)
        assert caught.value.status == status
    assert service.store.all_answers() == []
    following = service.answer(answer)
    assert following["step"] == 1
    with pytest.raises(RequestError, match="screen 1 is already answered; the next one is 2") as caught:
        service.answer(answer)  # replayed
    assert caught.value.status == 409
    skipped = study.sequences[0][2]["trial"]  # p1 came first: sequence 0
    with pytest.raises(RequestError, match="screen 3 comes after screen 2"):
        service.answer({**answer, "step": 2, "trial": skipped, "choice": study.trials[skipped]["options"][0]})
    stored = service.store.all_answers()
    assert [(a["participant"], a["step"], a["choice"]) for a in stored] == [("p1", 0, answer["choice"])]
    assert service.start({"participant": "p1"})["step"] == 1  # a returning participant continues


@pytest.fixture
def served(study):
    """The study served in this process, on a free loopback port."""
    server = make_server(study.root, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    server.service.store.close()


def _raw(url: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data


def test_http_refuses_oversized_and_malformed_bodies_and_serves_only_the_studys_images(study, served):
    server, url = served
    status, data = _raw(url, "POST", "/api/start", json.dumps({"participant": "x" * 3000}).encode())
    assert (status, json.loads(data)["error"]) == (413, "request body over 2048 bytes")
    assert json.loads(_raw(url, "POST", "/api/start", b"{not json")[1])["error"] == "the request body is not JSON"
    assert _raw(url, "POST", "/api/start", b"[1]")[0] == 400
    assert _raw(url, "POST", "/api/start", None, {"Transfer-Encoding": "chunked"})[0] == 411
    assert _raw(url, "POST", "/api/delete", b"{}")[0] == 404
    image = next(iter(study.images))
    status, data = _raw(url, "GET", f"/images/{image}")
    assert status == 200 and data == study.image_path(image).read_bytes()
    for path in (
        "/images/../study.json",
        "/images/%2e%2e%2fstudy.json",
        "/study.json",
        "/images/i9999",
        "/answers.sqlite",
    ):
        assert _raw(url, "GET", path)[0] == 404, path
    assert server.service.store.all_answers() == []


# --- a real server process ------------------------------------------------------------------------


def _start_server(study: Study, database: str | None = None) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "coemogen.cli", "study", "serve", str(study.root), "--port", "0"]
    process = subprocess.Popen(
        command + (["--database", database] if database else []), stdout=subprocess.PIPE, text=True
    )
    line = process.stdout.readline()
    if "serving the study on" not in line:
        process.kill()
        raise AssertionError(f"the server did not start: {line!r}")
    return process, line.split()[-1].rstrip("/")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(10)


def _post(url: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(url + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def _pick(participant: str, step: int) -> int:
    return (sum(map(ord, participant)) + step) % 2


class Participant:
    """Answers every screen in turn, over any of `urls`; remembers what it meant to answer at each
    screen and which answers the server acknowledged."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.intended: dict[int, str] = {}
        self.acknowledged: dict[int, str] = {}
        self.requests = 0
        self.done = False
        self.refused: str | None = None
        self.error: str | None = None

    def run(self, urls: list[str], pause: float = 0.0) -> None:
        state = None
        while not self.done:
            url = urls[self.requests % len(urls)]
            self.requests += 1
            try:
                if state is None:
                    state = _post(url, "/api/start", {"participant": self.name})
                else:
                    choice = state["images"][_pick(self.name, state["step"])]["id"]
                    self.intended[state["step"]] = choice
                    step = state["step"]
                    state = _post(url, "/api/answer", {**_answer(state), "choice": choice})
                    self.acknowledged[step] = choice
                self.done = state["done"]
                time.sleep(pause)
            except urllib.error.HTTPError as err:
                self.refused = json.load(err)["error"]
                return
            except (urllib.error.URLError, ConnectionError, http.client.HTTPException) as err:
                self.error = repr(err)
                urls = [u for u in urls if u != url]  # that server is gone
                if not urls:
                    return
                state = None  # ask another server where this participant is


def _stored(study: Study, database: str | None = None) -> dict[str, dict[int, str]]:
    store = Store(database_url(study.root, database), study.id)
    try:
        answers = store.all_answers()
    finally:
        store.close()
    by_participant: dict[str, dict[int, str]] = {}
    for a in answers:
        assert a["step"] not in by_participant.setdefault(a["participant"], {})
        by_participant[a["participant"]][a["step"]] = a["choice"]
    return by_participant


def _run_all(participants: list[Participant], urls: list[str], **options) -> list[threading.Thread]:
    threads = [threading.Thread(target=p.run, args=(urls,), kwargs=options) for p in participants]
    for thread in threads:
        thread.start()
    return threads


def test_twenty_concurrent_participants_over_http_every_answer_stored_once(study):
    process, url = _start_server(study)
    try:
        participants = [Participant(f"load-{i:02d}") for i in range(20)]
        start = time.perf_counter()
        for thread in _run_all(participants, [url]):
            thread.join(60)
        seconds = time.perf_counter() - start
    finally:
        _stop(process)
    assert all(p.done for p in participants)
    stored = _stored(study)
    assert {p.name: p.acknowledged for p in participants} == stored  # each screen once, as answered
    assert sum(map(len, stored.values())) == 20 * 11
    print(f"20 participants x 11 answers over HTTP in {seconds:.2f} s")


def _check_resumed(study: Study, participants: list[Participant], stored: dict, url: str) -> None:
    """Every acknowledged answer is stored as given, at most the one answer in flight besides, and
    each participant resumes at the first screen not stored."""
    for p in participants:
        mine = stored.get(p.name, {})
        assert sorted(mine) == list(range(len(mine)))
        assert all(mine[step] == choice for step, choice in p.acknowledged.items())
        assert all(mine[step] == p.intended[step] for step in mine)
        assert p.refused is None
        assert len(mine) - len(p.acknowledged) in (0, 1)
        state = _post(url, "/api/start", {"participant": p.name})
        assert state["answered"] == len(mine) and (state["done"] or state["step"] == len(mine))


@pytest.mark.slow
def test_sigkill_mid_study_loses_no_acknowledged_answer_and_participants_resume(study):
    process, url = _start_server(study)
    participants = [Participant(f"kill-{i:02d}") for i in range(20)]
    try:
        threads = _run_all(participants, [url], pause=0.01)
        while sum(len(p.acknowledged) for p in participants) < 80:
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        for thread in threads:
            thread.join(30)
    finally:
        _stop(process)
    assert not all(p.done for p in participants)
    stored = _stored(study)
    process, url = _start_server(study)
    try:
        _check_resumed(study, participants, stored, url)
        for thread in _run_all(participants, [url]):
            thread.join(60)
    finally:
        _stop(process)
    assert [(p.name, p.refused, p.error) for p in participants if not p.done] == []
    assert sum(map(len, _stored(study).values())) == 20 * 11


@pytest.fixture(scope="module")
def postgres_url():
    """$COEMOGEN_TEST_POSTGRES_URL (.ci/run starts a server), else a throwaway cluster from Debian's
    postgresql package in a temporary folder (run as the postgres user when we are root)."""
    pytest.importorskip("psycopg")
    if os.environ.get("COEMOGEN_TEST_POSTGRES_URL"):
        yield os.environ["COEMOGEN_TEST_POSTGRES_URL"]
        return
    binaries = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not binaries:
        pytest.skip("no PostgreSQL: set COEMOGEN_TEST_POSTGRES_URL or apt-get install postgresql")
    bin_dir = binaries[-1].parent
    folder = Path(tempfile.mkdtemp(prefix="coemogen-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        if not shutil.which("runuser"):
            pytest.skip("PostgreSQL must not run as root and runuser is missing")
        shutil.chown(folder, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    with __import__("socket").socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = folder / "data"
    try:
        subprocess.run(
            [*as_user, bin_dir / "initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        options = f"-h 127.0.0.1 -p {port} -k {folder} -c fsync=off"
        subprocess.run(
            [*as_user, bin_dir / "pg_ctl", "-D", data, "-l", folder / "log", "-o", options, "-w", "start"],
            check=True,
            capture_output=True,
            timeout=60,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, KeyError, LookupError) as err:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"could not start a throwaway PostgreSQL: {err}")
    yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    subprocess.run([*as_user, bin_dir / "pg_ctl", "-D", data, "-m", "immediate", "stop"], capture_output=True)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_two_server_processes_share_one_postgresql_database_through_a_sigkill(study, postgres_url):
    first, first_url = _start_server(study, postgres_url)
    second, second_url = _start_server(study, postgres_url)
    participants = [Participant(f"pg-{i:02d}") for i in range(12)]
    try:
        threads = _run_all(participants, [first_url, second_url], pause=0.01)
        while sum(len(p.acknowledged) for p in participants) < 40:
            time.sleep(0.01)
        first.send_signal(signal.SIGKILL)  # its participants carry on through the second server
        for thread in threads:
            thread.join(60)
        assert all(p.done for p in participants)
        stored = _stored(study, postgres_url)
        _check_resumed(study, participants, stored, second_url)
        assert sum(map(len, stored.values())) == 12 * 11
        assert Counter(p.name[:3] for p in participants) == {"pg-": 12}
    finally:
        _stop(first)
        _stop(second)


# --- a participant in a real browser --------------------------------------------------------------


@pytest.fixture
def artefacts(tmp_path):
    """Where a test leaves files for people to look at: $COEMOGEN_TEST_ARTIFACTS (CI) or a temporary folder."""
    folder = Path(os.environ.get("COEMOGEN_TEST_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.mark.slow
def test_browser_answers_by_keyboard_and_click_reloads_and_continues(study, served, artefacts):
    pytest.importorskip("selenium")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait
    from test_web import chromium_driver

    server, url = served
    driver = chromium_driver()
    try:
        wait = WebDriverWait(driver, 30)

        def at(question: int):
            wait.until(lambda d: d.find_element(By.ID, "counter").text == f"Question {question} of 11")

        driver.get(url + "/?participant=browser-1")
        wait.until(lambda d: d.find_element(By.ID, "consent").is_displayed())
        assert not driver.find_element(By.ID, "begin").is_enabled()
        driver.find_element(By.ID, "agree").click()
        driver.find_element(By.ID, "begin").click()
        at(1)
        driver.save_screenshot(str(artefacts / "study-trial.png"))
        body = driver.find_element(By.TAG_NAME, "body")
        body.send_keys(Keys.ARROW_LEFT)
        at(2)
        body.send_keys("2")
        at(3)
        driver.find_elements(By.CSS_SELECTOR, "#choices .choice")[1].click()
        at(4)
        driver.refresh()  # continues at question 4, no consent again
        at(4)
        assert not driver.find_element(By.ID, "consent").is_displayed()
        for question in range(4, 12):
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#choices .choice img")) == 2)
            driver.find_elements(By.CSS_SELECTOR, "#choices .choice")[question % 2].click()
            if question < 11:
                at(question + 1)
        wait.until(lambda d: d.find_element(By.ID, "done").is_displayed())
        assert driver.find_element(By.ID, "code").text == study.spec["completion_code"]
        driver.get(url + "/")  # a return visit without the id: localStorage remembers it
        wait.until(lambda d: d.find_element(By.ID, "done").is_displayed())
        assert "participant=browser-1" in driver.current_url
    finally:
        driver.quit()
    answers = server.service.store.all_answers()
    assert [a["step"] for a in answers] == list(range(11))
    assert [a["position"] for a in answers[:3]] == [0, 1, 1]
    assert all(a["rt_ms"] is not None and a["rt_ms"] >= 0 for a in answers)


# --- the analysis against hand computations -------------------------------------------------------


def test_wilson_binomial_bradley_terry_and_alpha_by_hand():
    # Wilson, 8 of 10, z = 1.96: (0.8 + 0.19208 -+ 1.96 * sqrt(0.016 + 0.0009604)) / 1.38416
    low, high = wilson_interval(8, 10, z=1.96)
    assert (low, high) == pytest.approx((0.49016, 0.94332), abs=1e-5)
    assert wilson_interval(0, 5)[0] == pytest.approx(0.0, abs=1e-12)
    # Two-sided exact test of 8 of 10 against 1/2: 2 * (C(10,8) + C(10,9) + C(10,10)) / 2^10.
    assert binomial_p(8, 10) == pytest.approx(2 * (comb(10, 8) + comb(10, 9) + 1) / 1024)
    assert binomial_p(5, 10) == pytest.approx(1.0)
    # Counts whose expected wins under strengths 4:2:1 equal the observed ones: that is the MLE.
    wins = np.array([[0, 2, 4], [1, 0, 2], [1, 1, 0]])  # A-B 3 games (A 2), B-C 3 (B 2), A-C 5 (A 4)
    assert bradley_terry(wins) == pytest.approx(np.array([4, 2, 1]) / 7, abs=1e-8)
    # Three units rated twice: (a, a), (a, b), (b, b): o_ab = o_ba = 1, n_a = n_b = 3, n = 6,
    # alpha = 1 - (n - 1) * 2 / (2 * 3 * 3) = 4/9.
    assert krippendorff_alpha_nominal([["a", "a"], ["a", "b"], ["b", "b"], ["a"]]) == pytest.approx(4 / 9)
    assert krippendorff_alpha_nominal([["a", "a"], ["b", "b"]]) == pytest.approx(1.0)


def test_analyze_excludes_by_the_rule_and_counts_the_rest_by_hand(study, tmp_path):
    service = _service(study)

    def method_index(state: dict, method: str) -> int:
        return next(i for i, im in enumerate(state["images"]) if study.images[im["id"]]["method"] == method)

    policies = {  # (gold trial, other trials)
        "always-a": (_gold_index, lambda s: method_index(s, "A")),
        "fails-gold": (lambda s, trial: 1 - _gold_index(s, trial), lambda s: method_index(s, "B")),
        "always-left": (_gold_index, lambda s: 0),
    }
    for name, policy in policies.items():
        state = service.start({"participant": name})
        while not state["done"]:
            trial = study.trials[state["trial"]]
            index = policy[0](state, trial) if trial["kind"] == "gold" else policy[1](state)
            state = service.answer(_answer(state, index))
    results = analyze(study.root, tmp_path / "report", resamples=50)
    checks = results["exclusions"]
    assert not checks["always-a"]["excluded"] and checks["always-a"]["repeat_agreement"] == 1.0
    assert checks["fails-gold"]["excluded"] and checks["fails-gold"]["gold_errors"] == 1
    assert checks["always-left"]["excluded"] and checks["always-left"]["repeat_agreement"] == 0.0
    assert results["included"] == 1 and results["main_answers"] == 8
    kept = [study.trials[s["trial"]] for s in study.sequences[0] if s["check"] is None]  # always-a came first
    for row in results["preference"]:
        n = sum(t["question"] == row["question"] and row["emotion"] in ("all", t["emotion"]) for t in kept)
        assert (row["a_wins"], row["n"]) == (n, n)
        assert row["p_value"] == pytest.approx(min(1.0, 2 * 0.5**n))
        assert (row["ci_low"], row["ci_high"]) == pytest.approx(wilson_interval(n, n))
    report = (tmp_path / "report" / "report.md").read_text()
    assert "fewer than 50% of the repeated trials" in report and "| fails-gold |" in report
    csv_lines = (tmp_path / "report" / "answers.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + 3 * 11 and csv_lines[0].startswith("participant,step,trial,check")
    assert (tmp_path / "report" / "preference.png").stat().st_size > 1000
    assert "<table>" in (tmp_path / "report" / "report.html").read_text()


def _gold_index(state: dict, trial: dict) -> int:
    return next(i for i, im in enumerate(state["images"]) if im["id"] == trial["answer"])


def test_pick_one_vote_shares_and_bradley_terry_by_hand(method_dirs, tmp_path):
    study = create_study(
        method_dirs, tmp_path / "pick", design="pick-one", trials_per_participant=16, repeats=0, sequences=2
    )
    service = _service(study)
    for name, favourite in (("likes-a", "A"), ("likes-b", "B")):
        state = service.start({"participant": name})
        while not state["done"]:
            state = service.answer(
                _answer(
                    state,
                    next(i for i, im in enumerate(state["images"]) if study.images[im["id"]]["method"] == favourite),
                )
            )
    results = analyze(study.root, tmp_path / "report", resamples=200)
    shares = {(r["question"], r["method"]): r for r in results["vote_share"]}
    for question in ("emotion", "coherence"):
        assert shares[question, "A"]["mean"] == pytest.approx(0.5)
        assert shares[question, "A"]["std"] == pytest.approx(np.std([1, 0], ddof=1))
        assert shares[question, "C"]["mean"] == 0.0 and shares[question, "C"]["ci_high"] == 0.0
    strengths = {(r["question"], r["method"]): r["strength"] for r in results["bradley_terry"]}
    assert strengths["emotion", "A"] == pytest.approx(0.5) and strengths["emotion", "C"] == pytest.approx(0.0)
    # Each question's 8 trials rated A by one and B by the other: n = 16 values, o_AB = o_BA = 8,
    # n_A = n_B = 8, alpha = 1 - (n - 1) * 16 / (2 * 8 * 8).
    alpha = {r["question"]: r["alpha"] for r in results["agreement"]}
    assert alpha["emotion"] == pytest.approx(1 - 15 * 16 / (2 * 8 * 8))
