"""`ccyclegan serve`: the page and its API on a real uvicorn server (127.0.0.1, a free port):
answers, errors on the page, uploads kept in memory, the queue under 20 concurrent requests,
503 when full, the CLI, and the page driven end to end in headless Chromium (Debian's
/usr/bin/chromium through Playwright's Python client; skipped when either is missing).

As in test_translate.py, the model is a tiny random generator: it still changes the face.
For the README's screenshot, run the browser test with a real model:

    CCYCLEGAN_WEB_CHECKPOINT=src/ccyclegan/weights/ccyclegan_fer2013.safetensors \\
    CCYCLEGAN_WEB_EMOTION=surprise CCYCLEGAN_WEB_SCREENSHOT=docs/img/web.png \\
    python -m pytest tests/test_web.py -k browser
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import pytest
from PIL import Image

from ccyclegan.cli import commands as cli
from ccyclegan.core.data import EMOTIONS
from ccyclegan.translate.api import ExpressionTranslator
from ccyclegan.translate.faces import Box, encode_image

httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("starlette")
pytest.importorskip("python_multipart")
skimage_data = pytest.importorskip("skimage.data")

from ccyclegan.translate import web  # noqa: E402  (after the skips: it needs the web extra)

FACE = Box(175, 64, 101, 101)  # the astronaut's face in the 512x512 photo (test_translate.py)
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync",
                  # a fake camera (a test pattern, no face) for the webcam path
                  "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


# --------------------------------------------------------------------------------------------
# Fixtures: a tiny model, photos, a live server


@pytest.fixture(scope="module")
def ref(gen_path) -> ExpressionTranslator:
    """A second translator for expected answers (the server's own is used by its worker)."""
    return ExpressionTranslator.load(gen_path)


@pytest.fixture(scope="module")
def small(astronaut) -> np.ndarray:
    """256x256 (face about 50 px): quick, and as a PNG it comes back losslessly."""
    return np.asarray(Image.fromarray(astronaut).resize((256, 256), Image.Resampling.BOX))


def encode(a: np.ndarray | Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    (a if isinstance(a, Image.Image) else Image.fromarray(a)).save(buf, fmt, **kw)
    return buf.getvalue()


def decode(img: dict) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(img["data"]))))


@contextlib.contextmanager
def live(app):
    """Run app on uvicorn in a thread, on 127.0.0.1 and a free port; yields its URL."""
    sock = web.bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield web.url_of(sock)
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


@pytest.fixture(scope="module")
def server(gen_path):
    app = web.create_app(ExpressionTranslator.load(gen_path), max_upload_mb=1)
    with live(app) as url:
        yield url, app.state.service


@pytest.fixture(scope="module")
def client():
    with httpx.Client(trust_env=False, timeout=120,
                      limits=httpx.Limits(max_connections=64)) as c:
        yield c


def post(client, url, photo: bytes | None, name="photo.png", **fields):
    files = {"image": (name, photo, "application/octet-stream")} if photo is not None else None
    return client.post(url + "api/translate", data=fields, files=files)


# --------------------------------------------------------------------------------------------
# The page


def test_page_is_self_contained(server, client):
    url, _ = server
    page = client.get(url)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "http" not in csp  # nothing from another origin
    texts = [page.text]
    for ref in re.findall(r'(?:src|href)="([^"]+)"', page.text):
        assert not re.match(r"(https?:)?//", ref), ref  # no CDN, no absolute URL
        if ref.startswith("static/"):
            r = client.get(url + ref)
            assert r.status_code == 200, ref
            texts.append(r.text)
    assert len(texts) == 3  # the page, app.js, app.css
    for text in texts:
        assert not re.search(r"https?://(?!localhost|127\.0\.0\.1)", text)
    js = texts[1] if "use strict" in texts[1] else texts[2]
    assert re.findall(r'fetch\("([^"]+)"', js) == ["api/info", "api/translate"]
    for path in ("docs", "openapi.json", "static/../web.py", "static/index.html.bak"):
        assert client.get(url + path).status_code == 404
    info = client.get(url + "api/info").json()
    assert info["emotions"] == list(EMOTIONS) and info["max_upload_bytes"] == 1_000_000
    # DNS rebinding: a page of another site resolving to 127.0.0.1 gets nothing
    assert client.get(url + "api/info", headers={"Host": "evil.example"}).status_code == 400


# --------------------------------------------------------------------------------------------
# The API


def test_one_emotion_as_translate_does(server, client, ref, small):
    url, _ = server
    r = post(client, url, encode(small, "PNG"), name="astronaut.png", to="happy",
             intensity="0.8")
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["filename"] == "astronaut_happy.png" and data["image"]["type"] == "image/png"
    got = decode(data["image"])
    want = ref.translate(small, to="happy", intensity=0.8)  # what `ccyclegan translate` makes
    np.testing.assert_array_equal(got, want)
    assert np.abs(got.astype(int) - small).max() > 0  # the face changed
    face = data["faces"][0]
    assert "source" not in face  # nothing about the input face is guessed
    assert decode(face["crops"]).shape == (48, 96)  # before | after, as the model saw them
    region = decode(face["region"])
    assert region.shape[1] == 2 * region.shape[0]  # before | after, in colour


def test_all_emotions_strip(server, client, ref, astronaut):
    url, _ = server
    jpeg = encode(astronaut, "JPEG", quality=92)
    r = post(client, url, jpeg, name="astronaut.jpg", to="all")
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["filename"] == "astronaut_all.jpg" and data["targets"] == list(EMOTIONS)
    got = decode(data["image"]).astype(float)
    want = ref.translate(np.asarray(Image.open(io.BytesIO(jpeg))), to="all")
    # the same strip, encoded as the page encodes it (JPEG, quality 95)
    want = np.asarray(Image.open(io.BytesIO(encode_image(Image.fromarray(want), ".jpg"))))
    assert got.shape == want.shape and np.abs(got - want).mean() < 0.5
    assert decode(data["faces"][0]["crops"]).shape == (48, 48 * 8)
    assert "region" not in data["faces"][0]
    # several targets, comma-separated: the strip of those, named as the command line names it
    r = post(client, url, jpeg, name="astronaut.jpg", to="sad,fear")
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["filename"] == "astronaut_sad-fear.jpg" and data["targets"] == ["sad", "fear"]
    image = decode(data["image"])
    assert image.shape[1] == 3 * image.shape[0]
    assert decode(data["faces"][0]["crops"]).shape == (48, 48 * 3)


def multipart_body(photo: bytes, boundary: str = "xYzBoundary", **fields) -> bytes:
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image"; '
                 f'filename="big.png"\r\nContent-Type: image/png\r\n\r\n'.encode() + photo
                 + f"\r\n--{boundary}--\r\n".encode())
    return b"".join(parts)


def test_bad_input_is_answered_and_the_server_keeps_serving(server, client, small):
    url, service = server
    png = encode(small, "PNG")
    jpeg = encode(small, "JPEG")
    huge = encode(Image.new("1", (8000, 6000)), "PNG")  # 48 Mpx in a few kB: header check
    assert len(huge) < 100_000
    cases = [
        ("not an image", dict(photo=b"hello, world\n" * 10, to="happy"), 415,
         "is not an image"),
        ("truncated", dict(photo=jpeg[: len(jpeg) // 2], to="happy"), 415, "not a readable"),
        ("empty", dict(photo=b"", to="happy"), 400, "is empty"),
        ("no face", dict(photo=encode(np.full((200, 300, 3), 128, np.uint8), "PNG")), 422,
         "No face found in this 300×200 photo"),
        ("too many pixels", dict(photo=huge), 413,
         "is 8000×6000 = 48 megapixels, over this server's limit of 40 megapixels: please "
         "send a smaller photo"),
        ("too large", dict(photo=os.urandom(1_500_000)), 413,
         "larger than the limit of 1.0 MB: please send a smaller photo"),
        ("emotion", dict(photo=png, to="joy"), 400, "unknown emotion 'joy'"),
        ("intensity", dict(photo=png, intensity="2"), 400, "intensity must be in [0, 1]"),
        ("no photo", dict(photo=None, to="happy"), 415, "Send the photo as multipart"),
    ]
    for what, kw, status, message in cases:
        r = post(client, url, kw.pop("photo"), **kw)
        assert r.status_code == status, (what, r.text)
        assert message in r.json()["error"], (what, r.json())
        # a web user is never told to set a server's variable or flag
        assert "CCYCLEGAN_" not in r.json()["error"] and "--" not in r.json()["error"]
    r = client.post(url + "api/translate", content=png, headers={"Content-Type": "image/png"})
    assert r.status_code == 415 and "multipart/form-data" in r.json()["error"]
    only_fields = b'--b\r\nContent-Disposition: form-data; name="to"\r\n\r\nsad\r\n--b--\r\n'
    r = client.post(url + "api/translate", content=only_fields,
                    headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert r.status_code == 400 and "No photo in the request" in r.json()["error"]
    r = client.post(url + "api/translate", content=b"--b\r\ngarbage",
                    headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert r.status_code == 400 and "Malformed upload" in r.json()["error"], r.text
    # no Content-Length (chunked): the limit is enforced while the body streams in
    body = multipart_body(os.urandom(3_000_000), to="happy")
    chunks = (body[i:i + 65536] for i in range(0, len(body), 65536))
    r = client.post(url + "api/translate", content=chunks,
                    headers={"Content-Type": "multipart/form-data; boundary=xYzBoundary"})
    assert r.status_code == 413 and "larger than the limit" in r.json()["error"]
    # ... and the same body under the limit is read normally
    ok = multipart_body(png, to="happy", intensity="0.5")
    r = client.post(url + "api/translate", content=iter([ok[:1000], ok[1000:]]),
                    headers={"Content-Type": "multipart/form-data; boundary=xYzBoundary"})
    assert r.status_code == 200, r.text
    assert service.health()["pending"] == 0


def test_a_body_too_large_is_cut_off_while_it_streams(gen_path, monkeypatch):
    """An endless upload is answered 413 after the limit (+ a bounded drain), not buffered."""
    monkeypatch.setattr(web, "DRAIN_MIN", 0)  # drain at most 4 x the limit: 1 MB
    app = web.create_app(ExpressionTranslator.load(gen_path), max_upload_mb=0.25)
    with live(app) as url:
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"POST /api/translate HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      b"Content-Type: multipart/form-data; boundary=b\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n")

            def chunk(data: bytes) -> bytes:
                return b"%x\r\n%s\r\n" % (len(data), data)

            s.sendall(chunk(b'--b\r\nContent-Disposition: form-data; name="image"; '
                            b'filename="endless.jpg"\r\n\r\n'))
            block, sent = chunk(bytes(65536)), 0
            s.settimeout(1)
            while sent < 256 << 20 and not select.select([s], [], [], 0)[0]:
                try:
                    s.sendall(block)
                except OSError:  # the server stopped reading: its answer is waiting
                    break
                sent += len(block)
            s.settimeout(10)
            answer = s.recv(65536)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert sent < 64 << 20  # answered long before the 256 MB the client had to send
        with httpx.Client(trust_env=False) as c:
            assert c.get(url + "api/health").json()["pending"] == 0  # and still serving


def test_uploads_are_never_written_to_disk(gen_path, client, small, monkeypatch):
    """The photo is parsed and decoded in memory: any temporary file is an error."""
    def no_temp_files(*args, **kwargs):
        raise AssertionError("an upload was written to a temporary file")

    for name in ("TemporaryFile", "NamedTemporaryFile", "mkstemp", "mkdtemp"):
        monkeypatch.setattr(tempfile, name, no_temp_files)
    spool = tempfile.SpooledTemporaryFile(max_size=10)  # control: the patch catches spooling
    with pytest.raises(AssertionError):
        spool.write(b"x" * 100)
    photo = encode(Image.fromarray(small).resize((768, 768)), "PNG", compress_level=0)
    assert len(photo) > 1_500_000  # Starlette's form parser would spool this to disk
    app = web.create_app(ExpressionTranslator.load(gen_path), max_upload_mb=4)
    with live(app) as url:
        r = post(client, url, photo, to="happy")
    assert r.status_code == 200, r.text


def test_twenty_concurrent_requests_queue_for_one_model(server, client, ref, small):
    url, service = server
    png = encode(small, "PNG")
    jobs = [(EMOTIONS[i % 7], ("1", "0.5", "0.25")[i % 3]) for i in range(20)]
    want = {job: ref.translate(small, to=job[0], intensity=float(job[1])) for job in set(jobs)}
    start = threading.Barrier(len(jobs))
    answers: list = [None] * len(jobs)

    def send(i: int) -> None:
        start.wait()
        try:
            answers[i] = post(client, url, png, to=jobs[i][0], intensity=jobs[i][1])
        except Exception as e:  # reported below
            answers[i] = e

    before = service.health()
    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for job, r in zip(jobs, answers, strict=True):
        assert not isinstance(r, Exception) and r.status_code == 200, (job, r)
        np.testing.assert_array_equal(decode(r.json()["image"]), want[job], err_msg=str(job))
    health = service.health()
    assert health["served"] - before["served"] == 20 and health["refused"] == before["refused"]
    assert health["peak_running"] == 1  # one photo in the model at a time
    assert health["peak_pending"] >= 2  # they really were in flight together
    assert health["pending"] == 0


class Gated:
    """A translator that waits for a gate before each photo: holds the queue still."""

    def __init__(self, translator):
        self.translator = translator
        self.gate = threading.Event()
        self.source, self.backend = translator.source, translator.backend

    def translate_faces(self, *args, **kwargs):
        assert self.gate.wait(60)
        return self.translator.translate_faces(*args, **kwargs)


def test_full_queue_answers_503(gen_path, client, small):
    gated = Gated(ExpressionTranslator.load(gen_path))
    app = web.create_app(gated, max_queue=1)
    service = app.state.service
    png = encode(small, "PNG")
    with live(app) as url:
        results: dict[str, object] = {}

        def send(key: str) -> None:
            results[key] = post(client, url, png, to="happy")

        def wait_for(pred) -> None:
            deadline = time.monotonic() + 30
            while not pred(service.health()):
                assert time.monotonic() < deadline, service.health()
                time.sleep(0.01)

        first = threading.Thread(target=send, args=("first",))
        first.start()
        wait_for(lambda h: h["running"] == 1)  # in the model, held at the gate
        second = threading.Thread(target=send, args=("second",))
        second.start()
        wait_for(lambda h: h["pending"] == 2)  # waiting: the queue (1) is full
        r = post(client, url, png, to="happy")
        assert r.status_code == 503 and r.headers["retry-after"] == "2"
        assert "busy" in r.json()["error"]
        gated.gate.set()
        first.join(60)
        second.join(60)
        assert results["first"].status_code == 200 and results["second"].status_code == 200
        assert post(client, url, png, to="sad").status_code == 200  # still serving
    assert service.health()["refused"] == 1 and service.health()["peak_running"] == 1


# --------------------------------------------------------------------------------------------
# The command


def test_serve_command_errors(gen_path, tmp_path, capsys):
    assert cli.main(["serve", "--checkpoint", str(tmp_path / "missing")]) == 2
    assert "ccyclegan serve: error:" in capsys.readouterr().err
    for bad in (["--port", "70000"], ["--max-upload-mb", "0"], ["--max-queue", "-1"]):
        with pytest.raises(SystemExit) as e:
            cli.main(["serve", *bad])
        assert e.value.code == 2
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert cli.main(["serve", "--checkpoint", str(gen_path), "--port", str(port)]) == 2
    assert "cannot listen on 127.0.0.1" in capsys.readouterr().err


@pytest.fixture(scope="module")
def cli_server(gen_path, tmp_path_factory):
    """`ccyclegan serve` itself, in a subprocess, on a free port (--port 0)."""
    model = os.environ.get("CCYCLEGAN_WEB_CHECKPOINT") or str(gen_path)
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with open(log, "w+") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ccyclegan", "serve", "--checkpoint", model, "--port", "0"],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            deadline = time.monotonic() + 90
            while not (m := re.search(r"ccyclegan serve: (http://\S+)", log.read_text())):
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            yield m[1]
        finally:
            proc.terminate()  # SIGTERM: uvicorn shuts down cleanly
            assert proc.wait(30) == 0, log.read_text()
            assert "ccyclegan serve: stopped" in log.read_text()


def test_serve_command(cli_server, client):
    assert cli_server.startswith("http://127.0.0.1:")  # loopback by default
    assert client.get(cli_server + "api/health").json()["ok"] is True


# --------------------------------------------------------------------------------------------
# The page in a browser


def test_browser_upload_happy_and_webcam(cli_server, astronaut, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    emotion = os.environ.get("CCYCLEGAN_WEB_EMOTION", "happy")  # the screenshot's choice
    photo = tmp_path / "astronaut.jpg"
    photo.write_bytes(encode(astronaut, "JPEG", quality=92))
    before = np.asarray(Image.open(photo)).astype(float)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_FLAGS, viewport={"width": 1280, "height": 900},
            permissions=["camera"], accept_downloads=True)
        try:
            page = browser.new_page()
            outside = []
            page.on("request", lambda r: r.url.startswith(cli_server)
                    or r.url.startswith(("data:", "blob:")) or outside.append(r.url))
            page.goto(cli_server)
            page.locator("#emotions label", has_text=emotion).click()
            page.set_input_files("#file", str(photo))  # uploading starts the translation
            page.wait_for_selector("#result:not([hidden])", timeout=60_000)
            assert page.locator("#error").is_hidden()
            shown = page.evaluate("() => { const i = document.getElementById('result-img');"
                                  " return [i.complete, i.naturalWidth, i.naturalHeight]; }")
            assert shown == [True, 512, 512]
            text = page.locator("#faces").inner_text()
            assert "Face 1" in text
            with page.expect_download() as download:
                page.click("#download")
            assert download.value.suggested_filename == f"astronaut_{emotion}.jpg"
            after = np.asarray(Image.open(download.value.path())).astype(float)
            assert after.shape == before.shape
            diff = np.abs(after - before).mean(axis=2)
            inner = diff[FACE.y + 25:FACE.y + 75, FACE.x + 25:FACE.x + 75]
            outer = np.concatenate([diff[:, :FACE.x - 20].ravel(), diff[:, 300:].ravel()])
            assert inner.mean() > 2.0, inner.mean()  # the face changed ...
            assert outer.mean() < 1.5, outer.mean()  # ... the rest only by JPEG re-encoding
            if shot := os.environ.get("CCYCLEGAN_WEB_SCREENSHOT"):
                page.screenshot(path=shot, full_page=True)
            # the webcam (a fake camera: a test pattern, no face): answered on the page
            page.click("#webcam")
            page.wait_for_function("() => document.getElementById('video').videoWidth > 0",
                                   timeout=30_000)
            page.click("#snap")
            page.wait_for_selector("#error:not([hidden])", timeout=60_000)
            assert "No face found" in page.locator("#error").inner_text()
            assert outside == []  # the page asked nothing of any other origin
        finally:
            browser.close()


def test_json_answers_are_plain_json(server, client, small):
    """The API is usable without the page: curl -F image=@photo.jpg -F to=happy URL."""
    url, _ = server
    r = post(client, url, encode(small, "PNG"), to="neutral", intensity="0")
    assert r.headers["content-type"] == "application/json"
    data = json.loads(r.content)
    np.testing.assert_array_equal(decode(data["image"]), small)  # intensity 0: unchanged
