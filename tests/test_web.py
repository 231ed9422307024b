"""The web app: server-side request checks, a real browser (headless Chromium through selenium) and
the official `gradio_client`, both against the app serving the shipped world run."""

import json
import math
import os
import shutil
import zipfile
from pathlib import Path

import pytest

from coemogen.errors import CoEmoGenError
from coemogen.taxonomy import Taxonomy
from coemogen.web.limits import MIX_CHOICE, GenerationRequest, WebLimits

pytestmark = pytest.mark.usefixtures("single_torch_thread")

# Lean on purpose: the page's defaults are min(4, max_images) images and min(DEFAULT_INFERENCE_STEPS, max_steps) steps.
TEST_LIMITS = WebLimits(max_images=2, max_steps=6, concurrency=1, max_queue=4, max_upload_pixels=100_000)
NO_MIX = [0.0] * 8


def form(**changes):
    """A valid form (fear, 2 images, 6 steps), with `changes`, checked against TEST_LIMITS."""
    values = dict(
        emotion="fear",
        mix_weights=NO_MIX,
        template="",
        seed=3,
        steps=6,
        guidance=5.0,
        temperature=0.4,
        num_images=2,
    )
    values.update(changes)
    return GenerationRequest.from_form(TEST_LIMITS, Taxonomy.default(), **values)


def test_request_checks_turn_form_values_into_pipeline_arguments():
    request = form(template="  a photo of {} bag ", steps=6.0)
    assert request.pipeline_kwargs() == {
        "emotion": "fear",
        "num_images": 2,
        "seed": 3,
        "template": "a photo of {} bag",
        "num_inference_steps": 6,
        "guidance_scale": 5.0,
        "cluster_temperature": 0.4,
    }
    assert form().template is None  # an empty template means the run's own
    mixed = form(emotion=MIX_CHOICE, mix_weights=[0, 0, 0, 0, 0, 0, 0.7, 0.3])
    assert mixed.emotion == "fear:0.7,sadness:0.3"
    assert Taxonomy.default().parse_mix(mixed.emotion) == pytest.approx({"fear": 0.7, "sadness": 0.3})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"num_images": 3}, "number of images must be between 1 and 2"),
        ({"steps": 7}, "steps must be between 1 and 6"),
        ({"steps": 2.5}, "steps must be a whole number"),
        ({"seed": -1}, "seed must be between 0"),
        ({"guidance": math.nan}, "guidance must be a number"),
        ({"temperature": "hot"}, "cluster temperature must be a number"),
        ({"num_images": True}, "number of images must be a number"),
        ({"emotion": "joy"}, "unknown emotion 'joy'"),
        ({"emotion": MIX_CHOICE}, "the mix is empty"),
        ({"emotion": MIX_CHOICE, "mix_weights": [2, 0, 0, 0, 0, 0, 0, 0]}, "weight of amusement must be between 0"),
        ({"template": "a photo of a bag"}, "exactly one '{}' placeholder"),
        ({"template": "{} " + "x" * 200}, "at most 200 characters"),
        ({"template": ["../etc/passwd"]}, "must be text"),
    ],
)
def test_request_checks_refuse_what_the_limits_do_not_allow(changes, message):
    with pytest.raises(CoEmoGenError, match=message.replace("(", r"\(").replace("{", r"\{").replace("}", r"\}")):
        form(**changes)


def test_limits_must_be_positive():
    with pytest.raises(CoEmoGenError, match="max_queue must be at least 1"):
        WebLimits(max_queue=0)


@pytest.fixture(scope="module")
def served_app(shipped_pipeline):
    """The app on the shipped world run, on loopback and the first free port from 7860."""
    pytest.importorskip("gradio")
    from coemogen.web import CoEmoGenWebApp

    demo = CoEmoGenWebApp(shipped_pipeline, TEST_LIMITS).launch(port=None, block=False)
    yield demo
    demo.close()


@pytest.fixture
def artefacts(tmp_path):
    """Where a test leaves files for people to look at: $COEMOGEN_TEST_ARTIFACTS (CI) or a temporary folder."""
    folder = Path(os.environ.get("COEMOGEN_TEST_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def chromium_driver():
    """Headless Debian Chromium through its chromedriver (skips where they are not installed)."""
    from selenium import webdriver

    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver_path = shutil.which("chromedriver")
    if not browser or not driver_path:
        pytest.skip("needs chromium and chromedriver (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(driver_path))


@pytest.mark.slow
def test_browser_chooses_an_emotion_generates_and_shows_images(served_app, artefacts):
    pytest.importorskip("selenium")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    assert served_app.server_name == "127.0.0.1"
    driver = chromium_driver()
    try:
        wait = WebDriverWait(driver, 120)
        driver.get(served_app.local_url)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#generate"))
        driver.find_element(By.CSS_SELECTOR, "#emotion input").click()
        driver.find_element(By.CSS_SELECTOR, "#emotion li[role=option][aria-label=fear]").click()
        driver.find_element(By.CSS_SELECTOR, "#generate").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#gallery img")) == TEST_LIMITS.max_images)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#download a"))
        driver.save_screenshot(str(artefacts / "web-e2e.png"))
        images = driver.find_elements(By.CSS_SELECTOR, "#gallery img")
        sources = [img.get_attribute("src") for img in images]
        page = driver.find_element(By.TAG_NAME, "body").text

        # A template without the placeholder: the page shows the server's message, not a traceback.
        driver.find_element(By.CSS_SELECTOR, "#template textarea, #template input").send_keys("a bag")
        driver.find_element(By.CSS_SELECTOR, "#generate").click()
        wait.until(lambda d: "exactly one '{}' placeholder" in d.find_element(By.TAG_NAME, "body").text)
        error_page = driver.find_element(By.TAG_NAME, "body").text
    finally:
        driver.quit()
    assert len(set(sources)) == TEST_LIMITS.max_images and all(src.startswith("http") for src in sources)
    assert "fear · seed 0" in page and "fear · seed 1" in page  # each image's caption
    compact = "".join(page.split())  # the metadata panel renders one token per line
    assert compact.count('"emotion":"fear"') == 2 and '"num_inference_steps":6' in compact
    assert "Traceback" not in error_page and 'File "' not in error_page
    assert (artefacts / "web-e2e.png").stat().st_size > 10_000


def test_gradio_client_generates_a_mix_and_gets_the_limits_messages(served_app, tmp_path):
    pytest.importorskip("gradio_client")
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    client = Client(served_app.local_url, verbose=False, download_files=str(tmp_path))
    mix = [0, 0, 0, 0, 0, 0, 0.7, 0.3]
    gallery, metadata, archive = client.predict(
        MIX_CHOICE, "a photo of {} bag", 5, 4, 5.0, 0.0, 2, 0, 0, *mix, api_name="/generate"
    )
    assert [item["caption"] for item in gallery] == [
        "fear 70% + sadness 30% · seed 5",
        "fear 70% + sadness 30% · seed 6",
    ]
    assert [m["seed"] for m in metadata] == [5, 6]
    assert metadata[0]["weights"] == pytest.approx({"fear": 0.7, "sadness": 0.3})
    assert {m["template"] for m in metadata} == {"a photo of {} bag"}
    assert {m["num_inference_steps"] for m in metadata} == {4}
    with zipfile.ZipFile(archive) as zf:
        names = sorted(zf.namelist())
        assert names == ["fear_0000.json", "fear_0000.png", "fear_0001.json", "fear_0001.png", "grid.png"]
        assert json.loads(zf.read("fear_0001.json")) == metadata[1]

    with pytest.raises(AppError, match="greater than maximum value 2"):
        client.predict("fear", "", 0, 4, 5.0, 0.4, 8, 0, 0, *NO_MIX, api_name="/generate")
    with pytest.raises(AppError, match="the mix is empty"):
        client.predict(MIX_CHOICE, "", 0, 4, 5.0, 0.4, 1, 0, 0, *NO_MIX, api_name="/generate")


def test_gradio_client_generates_at_a_valence_arousal_point(served_app, tmp_path):
    """The app's own client: the valence/arousal choice and its two sliders give the point's mix and
    intensity, as the Python API does; a value outside [-3, 3] is refused with the page's message."""
    pytest.importorskip("gradio_client")
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    from coemogen.web.limits import VA_CHOICE

    client = Client(served_app.local_url, verbose=False, download_files=str(tmp_path))
    gallery, metadata, _ = client.predict(VA_CHOICE, "", 3, 4, 5.0, 0.4, 1, -2.25, -1.5, *NO_MIX, api_name="/generate")
    mix, intensity = Taxonomy.default().va_mixes([(-2.25, -1.5)])[0]
    assert metadata[0]["va"] == [-2.25, -1.5] and metadata[0]["intensity"] == pytest.approx(intensity)
    assert metadata[0]["weights"] == pytest.approx(mix) and metadata[0]["emotion"] == "sadness"
    assert gallery[0]["caption"].startswith("V -2.25 A -1.5 (sadness")
    with pytest.raises(AppError, match="greater than maximum value 3"):
        client.predict(VA_CHOICE, "", 0, 4, 5.0, 0.4, 1, 3.5, 0, *NO_MIX, api_name="/generate")


# --- the Edit tab --------------------------------------------------------------------------------


def _upload(tmp_path, name, image, **save):
    path = tmp_path / name
    image.save(path, **save)
    return str(path)


def edit_form(upload, **changes):
    from coemogen.web.limits import EditRequest

    values = dict(emotion="fear", mix_weights=NO_MIX, method="sdedit", strength=0.5, seed=1, steps=4, guidance=5.0)
    values.update(changes)
    return EditRequest.from_form(TEST_LIMITS, Taxonomy.default(), upload, **values)


def test_an_upload_is_read_as_untrusted_and_converted(tmp_path):
    from PIL import Image

    rgb = Image.new("RGB", (40, 20), (200, 30, 30))
    assert edit_form(_upload(tmp_path, "a.png", rgb)).image.size == (40, 20)
    rgba = Image.new("RGBA", (16, 16), (0, 0, 255, 0))  # transparent: composited on white
    assert edit_form(_upload(tmp_path, "a.webp", rgba, lossless=True)).image.getpixel((0, 0)) == (255, 255, 255)
    assert edit_form(_upload(tmp_path, "p.png", rgb.convert("P"))).image.mode == "RGB"
    assert edit_form(_upload(tmp_path, "c.jpg", Image.new("CMYK", (16, 16), (0, 0, 0, 0)))).image.mode == "RGB"
    wide = Image.new("I;16", (16, 8))
    assert edit_form(_upload(tmp_path, "g16.png", wide)).image.size == (16, 8)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: the image is shown upright, 20 x 40
    assert edit_form(_upload(tmp_path, "r.jpg", rgb, exif=exif)).image.size == (20, 40)
    with pytest.raises(CoEmoGenError, match="GIF images are not accepted"):
        edit_form(_upload(tmp_path, "a.gif", rgb))
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(CoEmoGenError, match="cannot be used: unreadable image"):
        edit_form(str(tmp_path / "notes.png"))
    with pytest.raises(CoEmoGenError, match=r"too large \(400x300 > 100000 pixels\)"):  # refused from the header
        edit_form(_upload(tmp_path, "big.png", Image.new("RGB", (400, 300))))
    with pytest.raises(CoEmoGenError, match="upload an image"):
        edit_form(None)
    with pytest.raises(CoEmoGenError, match="strength must be between 0 and 1"):
        edit_form(_upload(tmp_path, "b.png", rgb), strength=1.5)
    with pytest.raises(CoEmoGenError, match="unknown edit method"):
        edit_form(_upload(tmp_path, "b.png", rgb), method="paint")
    with pytest.raises(CoEmoGenError, match="steps must be between 1 and 6"):
        edit_form(_upload(tmp_path, "b.png", rgb), steps=20)


def test_gradio_client_edits_an_upload_and_gets_the_upload_messages(served_app, tmp_path):
    pytest.importorskip("gradio_client")
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError
    from PIL import Image

    client = Client(served_app.local_url, verbose=False, download_files=str(tmp_path / "downloads"))
    source = _upload(tmp_path, "mine.png", Image.new("RGB", (96, 64), (60, 160, 90)))
    gallery, meta, edited = client.predict(
        handle_file(source), "fear", "inversion", 0.5, 2, 4, 5.0, *NO_MIX, api_name="/edit"
    )
    assert [item["caption"] for item in gallery] == ["source", "fear · seed 2 · inversion 0.5"]
    assert meta["method"] == "inversion" and meta["strength"] == 0.5 and meta["source_size"] == [96, 64]
    assert Image.open(edited).size == (96, 64)
    with pytest.raises(AppError, match="GIF images are not accepted"):
        client.predict(
            handle_file(_upload(tmp_path, "a.gif", Image.new("RGB", (8, 8)))), "fear", "sdedit", 0.5, 0, 4, 5.0,
            *NO_MIX, api_name="/edit",
        )  # fmt: skip


@pytest.mark.slow
def test_browser_uploads_an_image_and_edits_it(served_app, artefacts, tmp_path):
    pytest.importorskip("selenium")
    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    source = _upload(tmp_path, "mine.png", Image.new("RGB", (80, 64), (200, 120, 40)))
    driver = chromium_driver()
    try:
        wait = WebDriverWait(driver, 120)
        driver.get(served_app.local_url)
        wait.until(lambda d: d.find_elements(By.XPATH, "//button[@role='tab' and contains(., 'Edit your image')]"))
        driver.find_element(By.XPATH, "//button[@role='tab' and contains(., 'Edit your image')]").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#edit-upload input[type=file]"))
        driver.find_element(By.CSS_SELECTOR, "#edit-upload input[type=file]").send_keys(source)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#edit-upload img"))
        driver.find_element(By.CSS_SELECTOR, "#edit-button").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#edit-gallery img")) == 2)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#edit-download a"))
        driver.save_screenshot(str(artefacts / "web-edit.png"))
        page = driver.find_element(By.TAG_NAME, "body").text
    finally:
        driver.quit()
    assert "source" in page and "sdedit 0.6" in page
    assert "16,000" not in page and "100,000 pixels" in page  # the limits shown are the server's
