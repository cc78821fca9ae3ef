"""`ccyclegan serve`: a local web page to try the model on your own photo or a webcam shot.

    ccyclegan serve --checkpoint runs/paper           # http://127.0.0.1:7860/

The page (web_static/) posts a photo, an emotion and an intensity to POST /api/translate and
gets JSON back; ExpressionTranslator.translate_faces does the work on one worker thread.
Uploads are parsed as they stream in and held in memory only, bounded in size and in queue
length (upload.py reads them); nothing is loaded from another site. The reasons: docs/notes.md.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import json
import logging
import re
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import PurePath
from typing import Any

import numpy as np
from PIL import Image

from ccyclegan.core.data import EMOTIONS, max_pixels
from ccyclegan.translate.faces import (
    MIN_FACE,
    NoFaceError,
    Picture,
    TranslateError,
    encode_image,
    to_pil,
)
from ccyclegan.translate.files import output_tag
from ccyclegan.translate.inputs import check_intensity, parse_targets
from ccyclegan.translate.upload import (
    WebError,
    drain,
    is_rotated,
    open_upload,
    read_form,
)

__all__ = ["DEFAULT_HOST", "DEFAULT_MAX_QUEUE", "DEFAULT_MAX_UPLOAD_MB", "DEFAULT_PORT",
           "ServeError", "create_app", "serve"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
DEFAULT_MAX_UPLOAD_MB = 10.0
DEFAULT_MAX_QUEUE = 32
DRAIN_MIN = 64 << 20  # a refused body is read and dropped up to max(this, 4 x the limit)
STATIC = "web_static"
PAGES = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "media-src 'self' blob: mediastream:; connect-src 'self'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")

log = logging.getLogger("ccyclegan.translate.web")


class ServeError(RuntimeError):
    """`ccyclegan serve` cannot start: the web extra is missing, or the address is taken."""


def require_web():
    """Import the web extra's packages, or explain how to install them."""
    try:
        import starlette  # noqa: F401

        try:
            import python_multipart as multipart
        except ImportError:  # python-multipart < 0.0.13 called its module `multipart`
            import multipart  # type: ignore[no-redef]
    except ImportError as e:
        raise ServeError(f"the web page needs the web extra ({e}): "
                         "pip install 'ccyclegan[web]'") from None
    return multipart


def _b64(mime: str, data: bytes) -> dict[str, str]:
    return {"type": mime, "data": base64.b64encode(data).decode("ascii")}


def _safe_stem(filename: str) -> str:
    stem = PurePath(filename.replace("\\", "/")).stem if filename else ""
    stem = re.sub(r"[^\w.-]+", "_", stem, flags=re.ASCII).strip("._")
    return stem[:60] or "photo"


# --------------------------------------------------------------------------------------------
# The service: one model, one worker thread, a bounded queue


class _Service:
    def __init__(self, translator, max_upload_mb: float, max_queue: int):
        if not max_upload_mb > 0:
            raise ValueError(f"max_upload_mb must be > 0, got {max_upload_mb!r}")
        if max_queue < 0:
            raise ValueError(f"max_queue must be >= 0, got {max_queue!r}")
        self.multipart = require_web()
        self.translator = translator
        self.max_upload = int(max_upload_mb * 1_000_000)
        self.max_queue = int(max_queue)
        self.drain_cap = max(DRAIN_MIN, 4 * self.max_upload)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ccyclegan-model")
        self.slot: asyncio.Semaphore | None = None  # made in the server's event loop
        self.pending = 0  # admitted requests not yet answered: reading, waiting, running
        self.peak_pending = 0
        self.running = 0  # in the worker (at most 1)
        self.peak_running = 0
        self.served = 0
        self.refused = 0

    def info(self) -> dict[str, Any]:
        return {
            "emotions": list(EMOTIONS),
            "model": "/".join(PurePath(str(getattr(self.translator, "source", ""))).parts[-2:]),
            "backend": getattr(self.translator, "backend", ""),
            "max_upload_bytes": self.max_upload,
            "max_pixels": max_pixels(),
            "max_queue": self.max_queue,
            "min_face": MIN_FACE,
        }

    def health(self) -> dict[str, Any]:
        return {"ok": True, "pending": self.pending, "peak_pending": self.peak_pending,
                "running": self.running, "peak_running": self.peak_running,
                "served": self.served, "refused": self.refused}

    # ---------------------------------------------------------------------------- request

    async def translate(self, request):
        from starlette.responses import Response

        if self.pending > self.max_queue:  # 1 running + max_queue waiting already
            self.refused += 1
            await drain(request, self.drain_cap)
            return _error(WebError(
                503, f"The server is busy ({self.pending} photos ahead); try again in a few "
                     "seconds.", {"Retry-After": "2"}))
        self.pending += 1
        self.peak_pending = max(self.peak_pending, self.pending)
        try:
            form = await read_form(request, self.multipart, self.max_upload,
                                   self.drain_cap)
            if form.filename is None:
                raise WebError(400, "No photo in the request: send it as the form field "
                                    "'image' (multipart/form-data).")
            try:
                to = form.fields.get("to", "happy")
                targets = parse_targets(to)
                a = check_intensity(form.fields.get("intensity", "1"))
            except TranslateError as e:
                raise WebError(400, str(e)) from None
            detect = form.fields.get("detect", "true").strip().lower() not in (
                "0", "false", "no", "off")
            if self.slot is None:
                self.slot = asyncio.Semaphore(1)
            async with self.slot:
                if await request.is_disconnected():
                    return Response(status_code=400)
                loop = asyncio.get_running_loop()
                body = await loop.run_in_executor(
                    self.executor, self._work, form.file, form.filename, to, targets, a, detect)
            self.served += 1
            return Response(body, media_type="application/json",
                            headers={"Cache-Control": "no-store"})
        except WebError as e:
            return _error(e)
        except Exception as e:  # answered on the page; the server keeps serving
            from starlette.requests import ClientDisconnect

            if isinstance(e, ClientDisconnect):  # nobody to answer
                return Response(status_code=400)
            log.exception("translating an upload failed")
            return _error(WebError(500, "Internal error while translating this photo (the "
                                        "server logged it and keeps serving)."))
        finally:
            self.pending -= 1

    # ---------------------------------------------------------------------------- worker

    def _work(self, data: bytes | bytearray, filename: str, to: str, targets: tuple[str, ...],
              a: float, detect: bool) -> bytes:
        self.running += 1
        self.peak_running = max(self.peak_running, self.running)
        try:
            return self._translate(data, filename, to, targets, a, detect)
        finally:
            self.running -= 1

    def _translate(self, data: bytes | bytearray, filename: str, to: str, targets: tuple[str, ...],
                   a: float, detect: bool) -> bytes:
        t0 = time.perf_counter()
        name = filename or "the upload"
        img = open_upload(data, name)
        try:
            fmt = img.format
            try:
                result = self.translator.translate_faces(img, to=to, intensity=a,
                                                         detect=detect)
            except NoFaceError:
                w, h = img.size[::-1] if is_rotated(img) else img.size
                raise WebError(422, (
                    f"No face found in this {w}×{h} photo. The detector looks for frontal "
                    f"faces at least {MIN_FACE:.0%} of the photo's shorter side; if the photo "
                    "is already a close crop of one face, tick “The photo is a face crop”."
                )) from None
            except TranslateError as e:
                raise WebError(400, str(e)) from None
        finally:
            img.close()
        suffix = ".jpg" if fmt == "JPEG" else ".png"
        mime = "image/jpeg" if suffix == ".jpg" else "image/png"
        tag = output_tag(targets)  # as `ccyclegan translate` names and writes it
        if len(targets) == 1:  # the photo, or the strip
            out = to_pil(result.picture())
        else:
            out = to_pil(Picture(result.strip(), None, result.original.icc_profile))
        main = encode_image(out, suffix)
        strip = result.strip() if len(targets) == 1 else None
        tile = strip.shape[0] // len(result.faces) if strip is not None else 0
        faces = []
        for i, face in enumerate(result.faces):
            crops = np.concatenate([face.before] + [face.after[t] for t in targets], axis=1)
            entry: dict[str, Any] = {
                "box": list(face.box.as_tuple()),
                "crops": _b64("image/png", encode_image(Image.fromarray(crops), ".png")),
            }
            if strip is not None:  # for "all" the main image is these rows already
                region = Image.fromarray(np.ascontiguousarray(strip[i * tile:(i + 1) * tile]))
                entry["region"] = _b64("image/jpeg", encode_image(region, ".jpg"))
            faces.append(entry)
        h, w = result.original.pixels.shape[:2]
        payload = {
            "filename": f"{_safe_stem(filename)}_{tag}{suffix}",
            "targets": list(targets),
            "intensity": a,
            "detect": detect,
            "width": w,
            "height": h,
            "image": {**_b64(mime, main), "width": out.width, "height": out.height},
            "faces": faces,
            "seconds": round(time.perf_counter() - t0, 3),
        }
        return json.dumps(payload).encode()


def _error(e: WebError):
    from starlette.responses import JSONResponse

    return JSONResponse({"error": e.message}, status_code=e.status,
                        headers={"Cache-Control": "no-store", **e.headers})


# --------------------------------------------------------------------------------------------
# The app


def _static(name: str) -> bytes:
    return resources.files("ccyclegan.translate").joinpath(STATIC, name).read_bytes()


class _Guard:
    """ASGI wrapper: refuse Host headers outside allowed_hosts (None: any), and add security
    headers (CSP: nothing from another origin) to every response."""

    def __init__(self, app, allowed_hosts: tuple[str, ...] | None):
        self.app = app
        self.allowed = allowed_hosts

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self.allowed is not None:
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            name = host[1:host.index("]")] if host.startswith("[") and "]" in host else \
                host.rsplit(":", 1)[0] if host.count(":") == 1 else host
            if name.lower() not in self.allowed:
                from starlette.responses import PlainTextResponse

                resp = PlainTextResponse("Invalid Host header", status_code=400)
                return await resp(scope, receive, send)

        async def send_secure(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(b"content-security-policy", CSP.encode()),
                            (b"x-content-type-options", b"nosniff"),
                            (b"referrer-policy", b"no-referrer"),
                            (b"x-frame-options", b"DENY")]
                message = {**message, "headers": headers}
            await send(message)

        return await self.app(scope, receive, send_secure)


def create_app(translator, *, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
               max_queue: int = DEFAULT_MAX_QUEUE,
               allowed_hosts: tuple[str, ...] | None = LOOPBACK_NAMES):
    """The ASGI app (Starlette) around a loaded ExpressionTranslator.

    allowed_hosts: Host header names accepted (default: localhost only; None: any, for a
    server bound to another interface). ``app.state.service.health()`` counts requests.
    """
    require_web()
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route

    service = _Service(translator, max_upload_mb, max_queue)
    index = _static("index.html")
    assets = {name: (_static(name), mime) for name, mime in PAGES.items()}

    async def page(request):
        return Response(index, media_type="text/html; charset=utf-8")

    async def asset(request):
        name = request.path_params["name"]
        if name not in assets:
            return PlainTextResponse("Not Found", status_code=404)
        body, mime = assets[name]
        return Response(body, media_type=mime)

    async def info(request):
        return JSONResponse(service.info())

    async def health(request):
        return JSONResponse(service.health(), headers={"Cache-Control": "no-store"})

    @contextlib.asynccontextmanager
    async def lifespan(app):
        try:
            yield
        finally:
            service.executor.shutdown(wait=False, cancel_futures=True)

    app = Starlette(
        routes=[
            Route("/", page),
            Route("/static/{name}", asset),
            Route("/api/info", info),
            Route("/api/health", health),
            Route("/api/translate", service.translate, methods=["POST"]),
        ],
        middleware=[Middleware(_Guard, allowed_hosts=allowed_hosts)],
        lifespan=lifespan,
    )
    app.state.service = service
    return app


# --------------------------------------------------------------------------------------------
# The server


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: a free one); ServeError if that fails."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as e:
        raise ServeError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port} ({e.strerror or e}); "
                         "choose another --port") from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def serve(translator, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, max_queue: int = DEFAULT_MAX_QUEUE,
          log_level: str = "info", announce=None) -> None:
    """Serve the page until Ctrl-C / SIGTERM (blocks). announce(line): where the URL is said
    (default: stdout, flushed, so that a script reading it sees it at once)."""
    if announce is None:
        def announce(line: str) -> None:
            print(line, flush=True)
    require_web()
    try:
        import uvicorn
    except ImportError as e:
        raise ServeError(f"the web page needs the web extra ({e}): "
                         "pip install 'ccyclegan[web]'") from None
    local = _is_loopback(host)
    app = create_app(translator, max_upload_mb=max_upload_mb, max_queue=max_queue,
                     allowed_hosts=LOOPBACK_NAMES if local else None)
    sock = bind(host, port)
    config = uvicorn.Config(
        app, log_level=log_level, lifespan="on", server_header=False, proxy_headers=False,
        # a backstop on open connections; the model's own queue is max_queue
        limit_concurrency=max(64, 4 * (max_queue + 1)), timeout_keep_alive=5)
    server = uvicorn.Server(config)
    url = url_of(sock)
    if not local:
        announce(f"warning: listening on {host}: anyone who can reach this machine can use the "
                 "page; browsers allow the webcam only on localhost or https")
    announce(f"ccyclegan serve: {url} (model {translator.source}; Ctrl-C to stop)")
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal to the
    # handler it found: make both a normal return (exit 0), not a traceback or a kill.
    main = threading.current_thread() is threading.main_thread()
    old_term = signal.signal(signal.SIGTERM, _stopped) if main else None
    try:
        server.run(sockets=[sock])
    except (KeyboardInterrupt, _Stopped):
        pass
    finally:
        if main:
            signal.signal(signal.SIGTERM, old_term)
        sock.close()
    announce("ccyclegan serve: stopped")


class _Stopped(Exception):
    pass


def _stopped(signum, frame):
    raise _Stopped
