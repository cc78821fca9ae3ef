"""Reading an upload of the web page (web.py): the multipart/form-data body parsed as it
streams in, held in memory only and bounded in size, and the photo in it decoded with its pixel
count checked first. Every refusal is a WebError, which the page shows as its message.
"""

from __future__ import annotations

import contextlib
import io
import warnings

from PIL import Image, UnidentifiedImageError

from ccyclegan.core.data import DataError, check_image_size, max_pixels

__all__ = ["FIELD_LIMIT", "FIELDS_MAX", "UploadForm", "WebError", "drain", "is_rotated",
           "open_upload", "read_form", "short"]

FIELD_LIMIT = 1024  # bytes of each text field (to, intensity, detect)
FIELDS_MAX = 16


class WebError(Exception):
    """A request the page answers with a message (status 4xx/5xx, JSON {"error": ...})."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB" if n < 10e6 else f"{n / 1e6:.0f} MB"


def short(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


# --------------------------------------------------------------------------------------------
# The form: streamed, bounded, in memory


class UploadForm:
    """multipart/form-data pushed through python-multipart; keeps the text fields and the one
    file part (the photo, whatever its field name) in memory, refusing anything over the
    limits as it arrives."""

    def __init__(self, multipart, boundary: bytes, file_limit: int):
        self.file_limit = file_limit
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self.file = bytearray()
        self._kind = ""  # of the current part: "file" or "field"
        self._name = ""
        self._data = bytearray()
        self._hname = b""
        self._hvalue = b""
        self._disposition = b""
        self._parse_header = multipart.multipart.parse_options_header
        self.parser = multipart.MultipartParser(boundary, {
            "on_part_begin": self._begin,
            "on_part_data": self._part_data,
            "on_part_end": self._end,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_done,
            "on_end": self._done,
        })
        self.complete = False  # the closing boundary arrived

    def _done(self) -> None:
        self.complete = True

    def _begin(self) -> None:
        self._kind, self._name, self._data, self._disposition = "", "", bytearray(), b""

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._hname += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._hvalue += data[start:end]

    def _header_end(self) -> None:
        if self._hname.strip().lower() == b"content-disposition":
            self._disposition = self._hvalue
        self._hname = self._hvalue = b""

    def _headers_done(self) -> None:
        _, opts = self._parse_header(self._disposition)
        self._name = opts.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in opts:
            if self.filename is not None:
                raise WebError(400, "Send one photo per request.")
            self._kind = "file"
            self.filename = opts[b"filename"].decode("utf-8", "replace")
        else:
            if len(self.fields) >= FIELDS_MAX:
                raise WebError(400, "Too many form fields.")
            self._kind = "field"

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        n = end - start
        if self._kind == "file":
            if len(self.file) + n > self.file_limit:
                raise _TooLarge
            self.file += data[start:end]
        else:
            if len(self._data) + n > FIELD_LIMIT:
                raise WebError(400, f"Form field {self._name!r} is too long.")
            self._data += data[start:end]

    def _end(self) -> None:
        if self._kind == "field" and self._name:
            self.fields[self._name] = self._data.decode("utf-8", "replace")
        self._kind = ""


class _TooLarge(Exception):
    pass


async def drain(request, cap: int) -> None:
    """Read and drop what is left of a refused body (up to cap bytes), so that the client,
    which is still sending, gets to read the answer rather than a reset connection."""
    seen = 0
    with contextlib.suppress(Exception):
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > cap:
                break


async def read_form(request, multipart, max_upload: int, drain_cap: int) -> UploadForm:
    """The request's multipart body, parsed as it streams in: a photo of at most max_upload
    bytes and a few short text fields. A refused body is drained up to drain_cap bytes first
    (see drain); a body declared larger than that is refused without reading it."""
    ctype, opts = multipart.multipart.parse_options_header(
        request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or not opts.get(b"boundary"):
        await drain(request, drain_cap)
        raise WebError(415, "Send the photo as multipart/form-data (field 'image').")
    body_limit = max_upload + FIELDS_MAX * FIELD_LIMIT + 64 * 1024  # + part headers
    too_large = WebError(413, f"This file is larger than the limit of "
                              f"{_mb(max_upload)}: please send a smaller photo (a "
                              f"JPEG of a few megapixels is plenty).")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > drain_cap:
        too_large.headers["Connection"] = "close"  # not worth reading to the end
        raise too_large
    form = UploadForm(multipart, opts[b"boundary"], max_upload)
    seen = 0
    try:
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > body_limit:
                raise _TooLarge
            form.parser.write(chunk)
        form.parser.finalize()
        if not form.complete:
            raise WebError(400, "Malformed upload (the body ended before its closing "
                                "boundary).")
    except _TooLarge:
        await drain(request, drain_cap)
        raise too_large from None
    except WebError:
        await drain(request, drain_cap)
        raise
    except Exception as e:  # python-multipart's FormParserError and friends
        from starlette.requests import ClientDisconnect

        if isinstance(e, ClientDisconnect):
            raise
        await drain(request, drain_cap)
        raise WebError(400, f"Malformed upload ({short(e)}).") from None
    return form


# --------------------------------------------------------------------------------------------
# The photo


def is_rotated(img: Image.Image) -> bool:
    with contextlib.suppress(Exception):
        return img.getexif().get(0x0112, 1) in (5, 6, 7, 8)
    return False


def open_upload(data: bytes | bytearray, name: str) -> Image.Image:
    """The upload as a decoded PIL image; its pixel count is checked on the header first."""
    if not data:
        raise WebError(400, f"{name} is empty.")
    with warnings.catch_warnings():
        # the project's own pixel limit applies (below); Pillow's > 89M pixels warning is noise
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except Exception as e:  # a hostile file can make a decoder raise anything
            why = ("not a known image format" if isinstance(e, UnidentifiedImageError)
                   else short(e))
            raise WebError(415, f"{name} is not an image this server can read (JPEG, PNG, "
                                f"WebP, BMP, TIFF, GIF, ...): {why}.") from None
        try:
            check_image_size(img, name)
            img.load()  # decode it all now: a truncated file fails here
        except DataError:
            img.close()
            w, h = img.size
            raise WebError(413, f"{name} is {w}×{h} = {w * h / 1e6:.0f} megapixels, over this "
                                f"server's limit of {max_pixels() / 1e6:.0f} megapixels: please "
                                f"send a smaller photo.") from None
        except Image.DecompressionBombError as e:  # Pillow's own ceiling (2 x 89M pixels)
            img.close()
            raise WebError(413, f"{name} is too large to decode ({short(e)}).") from None
        except Exception as e:  # OSError, SyntaxError, ValueError, struct.error, EOFError...
            img.close()
            raise WebError(415, f"{name} is not a readable image ({short(e)}).") from None
    return img
