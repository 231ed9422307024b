"""`coemogen study serve`: the participant page and its small JSON API on the standard library's
threading HTTP server. The page never names a file: images are asked for by the study's own ids."""

from __future__ import annotations

import json
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import CoEmoGenError
from .design import Study
from .store import PARTICIPANT, DuplicateAnswer, Store, database_url

MAX_BODY = 2048  # an answer is ~150 bytes of JSON
MAX_RT_MS = 3_600_000
IMAGE_ID = re.compile(r"^i[0-9]{4}$")
ANSWER_KEYS = {"participant", "step", "trial", "choice", "rt_ms"}
CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


class RequestError(CoEmoGenError):
    """A refused request: the HTTP status and the message the page shows."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class StudyService:
    """What the API does, without HTTP: the server and the simulated participants both answer here."""

    def __init__(self, study: Study, store: Store) -> None:
        self.study = study
        self.store = store

    def _steps(self, number: int) -> list[dict]:
        sequences = self.study.sequences
        return sequences[(number - 1) % len(sequences)]

    @staticmethod
    def _participant(value: object) -> str:
        if not isinstance(value, str) or not PARTICIPANT.match(value):
            raise RequestError(400, "participant ids are 1-64 letters, digits, '-' or '_'")
        return value

    def screen(self, steps: list[dict], step: int) -> dict:
        """What the page shows at `step`: the question and the images in their display order
        (never whether it is an attention check)."""
        plan = steps[step]
        trial = self.study.trials[plan["trial"]]
        shown = [trial["options"][i] for i in plan["order"]]
        return {
            "step": step,
            "total": len(steps),
            "trial": plan["trial"],
            "question": self.study.question_text(trial),
            "images": [{"id": image_id, "url": f"images/{image_id}"} for image_id in shown],
        }

    def _progress(self, participant: str, steps: list[dict], answered: int) -> dict:
        if answered >= len(steps):
            return {
                "participant": participant,
                "done": True,
                "total": len(steps),
                "answered": answered,
                "code": self.study.spec["completion_code"],
            }
        return {"participant": participant, "done": False, "answered": answered, **self.screen(steps, answered)}

    def start(self, payload: dict) -> dict:
        """Register a participant (or find them again) and return where they are."""
        participant = self._participant(payload.get("participant"))
        steps = self._steps(self.store.register(participant))
        return self._progress(participant, steps, self.store.answered(participant))

    def answer(self, payload: dict) -> dict:
        """Check one answer against the participant's own sequence, store it, return the next screen."""
        extra = set(payload) - ANSWER_KEYS
        if extra:
            raise RequestError(400, f"unexpected fields: {', '.join(sorted(map(str, extra)))}")
        participant = self._participant(payload.get("participant"))
        step, trial, choice, rt_ms = (payload.get(k) for k in ("step", "trial", "choice", "rt_ms"))
        if not isinstance(step, int) or isinstance(step, bool):
            raise RequestError(400, "step must be a whole number")
        if not isinstance(trial, str) or not isinstance(choice, str):
            raise RequestError(400, "trial and choice must be ids (text)")
        if rt_ms is not None and (not isinstance(rt_ms, int) or isinstance(rt_ms, bool) or not 0 <= rt_ms <= MAX_RT_MS):
            raise RequestError(400, f"rt_ms must be a whole number of milliseconds between 0 and {MAX_RT_MS}")
        number = self.store.number(participant)
        if number is None:
            raise RequestError(404, f"unknown participant {participant}: open the study page first")
        steps = self._steps(number)
        if not 0 <= step < len(steps):
            raise RequestError(404, f"there is no screen {step + 1} (the study has {len(steps)})")
        expected = steps[step]
        if trial != expected["trial"]:
            raise RequestError(
                400, f"screen {step + 1} of participant {participant} shows another trial than {trial!r}"
            )
        shown = [self.study.trials[trial]["options"][i] for i in expected["order"]]
        if choice not in shown:
            raise RequestError(400, f"{choice!r} is not one of the images on screen {step + 1}")
        answered = self.store.answered(participant)
        if step < answered:
            raise RequestError(409, f"screen {step + 1} is already answered; the next one is {answered + 1}")
        if step > answered:
            raise RequestError(409, f"screen {step + 1} comes after screen {answered + 1}, which is not answered yet")
        try:
            self.store.record(participant, step, trial, choice, shown.index(choice), rt_ms)
        except DuplicateAnswer as err:  # a concurrent request got there first
            raise RequestError(409, str(err)) from None
        return self._progress(participant, steps, step + 1)

    def public(self) -> dict:
        spec = self.study.spec
        return {
            "study": self.study.id,
            "title": spec["title"],
            "consent": spec["consent"],
            "instructions": spec["instructions"],
            "total": len(self.study.sequences[0]),
        }


def _static(name: str) -> bytes:
    return resources.files("coemogen.study").joinpath("static", name).read_bytes()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 resets connections when a class of participants starts at once


def make_server(study_root: str | Path, host: str = "127.0.0.1", port: int = 8765, database: str | None = None):
    """A ThreadingHTTPServer serving the study (not started: call serve_forever)."""
    study = Study.load(study_root)
    service = StudyService(study, Store(database_url(study.root, database), study.id))
    pages = {
        "/": ("text/html; charset=utf-8", _static("index.html")),
        "/study.js": ("text/javascript; charset=utf-8", _static("study.js")),
    }

    class Handler(BaseHTTPRequestHandler):
        server_version = "coemogen-study"
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # one line per request would drown the terminal
            pass

        def _send(self, status: int, content_type: str, body: bytes, cache: str = "no-store") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", cache)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, data: dict) -> None:
            self._send(status, "application/json", json.dumps(data).encode())

        def do_GET(self):
            path = urlsplit(self.path).path
            if path in pages:
                return self._send(200, *pages[path])
            if path == "/api/study":
                return self._json(200, service.public())
            image_id = path.removeprefix("/images/")
            if path.startswith("/images/") and IMAGE_ID.match(image_id) and image_id in study.images:
                file = study.image_path(image_id)
                return self._send(200, CONTENT_TYPES[file.suffix], file.read_bytes(), "public, max-age=3600")
            self._json(404, {"error": f"no such page: {path[:80]}"})

        def do_POST(self):
            path = urlsplit(self.path).path
            actions = {"/api/start": service.start, "/api/answer": service.answer}
            try:
                if path not in actions:
                    raise RequestError(404, f"no such action: {path[:80]}")
                payload = self._body()
                self._json(200, actions[path](payload))
            except RequestError as err:
                self._json(err.status, {"error": str(err)})
            except service.store.sa.exc.SQLAlchemyError:
                self._json(503, {"error": "the answers database is not reachable; try again in a moment"})

        def _body(self) -> dict:
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit():
                self.close_connection = True
                raise RequestError(411, "send the answer with a Content-Length")
            if int(length) > MAX_BODY:
                self.close_connection = True  # the body is not read
                raise RequestError(413, f"request body over {MAX_BODY} bytes")
            try:
                payload = json.loads(self.rfile.read(int(length)))
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise RequestError(400, "the request body is not JSON") from None
            if not isinstance(payload, dict):
                raise RequestError(400, "the request body must be a JSON object")
            return payload

    server = _Server((host, port), Handler)
    server.service = service
    return server


def serve(study_root: str | Path, host: str = "127.0.0.1", port: int = 8765, database: str | None = None) -> None:
    """Serve until interrupted; prints the address (port 0: a free one) for people and scripts."""
    try:
        server = make_server(study_root, host, port, database)
    except OSError as err:
        raise CoEmoGenError(f"cannot listen on {host}:{port}: {err.strerror}") from None
    bound_host, bound_port = server.server_address[:2]
    print(f"serving the study on http://{bound_host}:{bound_port}/", flush=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"note: listening on {host}: anyone who reaches this address can answer", file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        server.service.store.close()
