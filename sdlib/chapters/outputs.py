"""What an executed chapter holds: its glued values, its claims' records and its figures.

:func:`extract_glue` decodes every value glued with myst-nb's ``glue`` (JSON, Python literals such
as ``np.float64(0.5)``, text, HTML); :func:`claim_records` reads the chapters' claims ledgers among
them (:mod:`sdlib.chapters.claims`); :func:`extract_figures` writes every displayed or glued image
to a file named after the figure (its ``mystnb.figure.name`` label, e.g. ``fig-2a.png`` for the
paper's Figure 2a), with the run's parameters in the PNG's text chunks (:func:`png_with_text`).
"""

from __future__ import annotations

import ast
import base64
import re
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sdlib.chapters import claims as claims_api
from sdlib.provenance import write_bytes_atomic

__all__ = [
    "GLUE_PREFIX", "HIDDEN", "claim_records", "extract_figures", "extract_glue", "figure_label", "glue_figures",
    "notebook_claims",
    "png_text", "png_with_text",
]

#: How myst-nb's ``glue(name, value, display=False)`` stores a value in a display_data output:
#: every mimetype of the value's mimebundle prefixed with this, and ``metadata.scrapbook.name``.
GLUE_PREFIX = "application/papermill.record/"

_NUMPY_SCALAR = re.compile(r"^(?:np|numpy)\.(?:float|int|uint|bool|complex)\w*\((?P<inner>.*)\)$", re.S)


def _decode_text(text: str) -> Any:
    """A text/plain repr -> the Python literal it shows (``np.float64(0.5)`` -> 0.5), else the text."""
    m = _NUMPY_SCALAR.match(text.strip())
    candidate = m["inner"] if m else text
    try:
        return ast.literal_eval(candidate)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def _decode_glue(data: Mapping[str, Any]) -> Any:
    """A glued mimebundle (prefix removed) -> a JSON-able value: JSON, a literal, text or HTML."""
    if "application/json" in data:
        return data["application/json"]
    text = data.get("text/plain")
    if isinstance(text, list):
        text = "".join(text)
    if text is not None:
        value = _decode_text(text)
        is_repr = isinstance(value, str) and value.startswith("<") and " at 0x" in value
        if not is_repr:
            return value
    html = data.get("text/html")
    if html is not None:
        return {"text/html": "".join(html) if isinstance(html, list) else html}
    for mime in data:
        if mime.startswith("image/"):
            return {"image": mime}
    return text


def extract_glue(nb: Any) -> dict[str, Any]:
    """Every value glued with myst-nb's ``glue`` in an executed notebook, decoded."""
    out: dict[str, Any] = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            meta = output.get("metadata", {}).get("scrapbook")
            if not meta or "name" not in meta:
                continue
            prefix = meta.get("mime_prefix", "")
            data = {k[len(prefix):] if prefix and k.startswith(prefix) else k: v
                    for k, v in output.get("data", {}).items()}
            out[meta["name"]] = _decode_glue(data)
    return out


def claim_records(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every claim record of the chapters' ledgers glued in ``results``."""
    out: list[dict[str, Any]] = []
    for prefix in claims_api.glue_prefixes(results):
        try:
            out.extend(claims_api.read_ledger(results[claims_api.ledger_key(prefix)]))
        except ValueError:
            continue
    return out


def notebook_claims(nb: Any) -> list[dict[str, Any]]:
    """The claim records of the ledgers glued in an executed notebook (e.g. a committed reference)."""
    return claim_records(extract_glue(nb))


# --------------------------------------------------------------------------------------------------
# Figures


_EXTS = {"image/png": "png", "image/jpeg": "jpg", "image/svg+xml": "svg"}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def figure_label(cell: Any) -> str | None:
    """The label a chapter gives the figure of a code cell, as a file-name-safe text; None for a cell
    without one: a tag ``figure:2a`` (the paper's Figure 2a) gives ``figure2a``, else its
    ``mystnb.figure.name`` (``fig-2a``), else a ``name`` in the cell's metadata."""
    meta = cell.get("metadata", {})
    tagged = [t.partition(":")[2].strip() for t in meta.get("tags", [])
              if isinstance(t, str) and t.startswith("figure:")]
    figure = (meta.get("mystnb") or {}).get("figure") or {}
    label = f"figure{tagged[0]}" if tagged and tagged[0] else None
    label = label or (figure.get("name") if isinstance(figure, Mapping) else None) or meta.get("name")
    if not isinstance(label, str) or not label.strip():
        return None
    return _UNSAFE.sub("-", label.strip()).strip("-.") or None


def figure_caption(cell: Any) -> str | None:
    """The caption of a code cell's figure (``mystnb.figure.caption``), on one line; or None."""
    figure = (cell.get("metadata", {}).get("mystnb") or {}).get("figure") or {}
    caption = figure.get("caption") if isinstance(figure, Mapping) else None
    return " ".join(caption.split()) if isinstance(caption, str) and caption.strip() else None


#: A ``{glue:figure}`` directive of a Markdown cell: its key, its options, its caption.
_GLUE_FIGURE = re.compile(r"^(`{3,}|:{3,})\{glue:figure\}\s+(?P<key>\S+)[ \t]*\n(?P<opts>(?:[ \t]*:[\w-]+:[^\n]*\n)*)"
                          r"(?P<body>.*?)^\1[ \t]*$", re.S | re.M)
_GLUE_ROLE = re.compile(r"\{glue(?::text)?\}`(?P<key>[^`:]+)(?::(?P<spec>[^`]*))?`")
#: Tags with which a cell's outputs are not shown in the book.
HIDDEN = ("remove-output", "remove-cell")


def _glued_text(text: str, glued: Mapping[str, Any]) -> str:
    """``text`` with each ``{glue:text}`KEY:SPEC``` role replaced by the glued value, formatted."""
    def value(m: re.Match[str]) -> str:
        v, spec = glued.get(m["key"], m[0]), m["spec"] or ""
        try:
            return format(v, spec)
        except (TypeError, ValueError):
            return str(v)
    return _GLUE_ROLE.sub(value, text)


def glue_figures(nb: Any) -> dict[str, tuple[str | None, str | None]]:
    """``{glue key: (name, caption)}`` of the ``{glue:figure}`` directives of a notebook's Markdown:
    the figure's ``:name:`` and its caption on one line, with the glued values of its
    ``{glue:text}`` roles written in."""
    glued = extract_glue(nb)
    out: dict[str, tuple[str | None, str | None]] = {}
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for m in _GLUE_FIGURE.finditer(cell.source if cell.source.endswith("\n") else cell.source + "\n"):
            name = re.search(r":name:\s*(\S+)", m["opts"])
            caption = " ".join(_glued_text(m["body"], glued).split())
            out[m["key"]] = (name[1] if name else None, caption or None)
    return out


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_with_text(png: bytes, text: Mapping[str, str]) -> bytes:
    """``png`` with one international text chunk (``iTXt``, UTF-8) per item of ``text``, before ``IEND``.

    Keys are 1 to 79 Latin-1 characters (the PNG specification's keywords); a file that is not a
    PNG is returned unchanged.
    """
    end = png.rfind(b"IEND")
    if not png.startswith(b"\x89PNG\r\n\x1a\n") or end < 12 or not text:
        return png
    chunks = b""
    for key, value in text.items():
        keyword = key.encode("latin-1")[:79]
        # keyword, NUL, compression flag 0, method 0, empty language tag, NUL, empty translated keyword, NUL
        chunks += _chunk(b"iTXt", keyword + b"\x00\x00\x00\x00\x00" + str(value).encode("utf8"))
    at = end - 4   # the IEND chunk starts with its 4-byte length
    return png[:at] + chunks + png[at:]


def png_text(png: bytes) -> dict[str, str]:
    """The ``tEXt`` and ``iTXt`` chunks of a PNG as ``{keyword: text}`` (the reader of :func:`png_with_text`)."""
    out: dict[str, str] = {}
    pos = 8
    while pos + 8 <= len(png):
        (length,), kind = struct.unpack(">I", png[pos:pos + 4]), png[pos + 4:pos + 8]
        data = png[pos + 8:pos + 8 + length]
        if kind == b"tEXt":
            key, _, value = data.partition(b"\x00")
            out[key.decode("latin-1")] = value.decode("latin-1")
        elif kind == b"iTXt":
            key, _, rest = data.partition(b"\x00")
            if rest[:1] == b"\x00":   # uncompressed
                _, _, rest = rest[2:].partition(b"\x00")   # language tag
                _, _, value = rest.partition(b"\x00")      # translated keyword
                out[key.decode("latin-1")] = value.decode("utf8", errors="replace")
        pos += 12 + length
    return out


def _image(output: Mapping[str, Any]) -> tuple[str, bytes, str | None] | None:
    """``(extension, bytes, glue name)`` of the first image of an output, or None."""
    data = output.get("data", {})
    meta = output.get("metadata", {}).get("scrapbook") or {}
    prefix = meta.get("mime_prefix", "")
    for mime, ext in _EXTS.items():
        payload = data.get(prefix + mime)
        if payload is None:
            continue
        if isinstance(payload, list):
            payload = "".join(payload)
        raw = payload.encode("utf8") if ext == "svg" else base64.b64decode(payload)
        return ext, raw, meta.get("name") or None
    return None


def extract_figures(nb: Any, folder: str | Path, *, text: Mapping[str, str] | None = None) -> list[Path]:
    """Write every PNG/JPEG/SVG output of ``nb`` into ``folder``; return the paths in the notebook's order.

    A figure is named after its cell's label (:func:`figure_label`: ``figure2a.png``, ``fig-2a.png``; a second image
    of the cell ``fig-2a_1.png``), a glued image after its glue key (``KEY.png``), any other image
    after the index of its cell (``cellNNN_K.png``). An image that the book does not show (a cell
    tagged ``remove-output`` or ``remove-cell``, not glued) is left out: a chapter that draws a
    figure there and glues it into a ``{glue:figure}`` would otherwise give it twice. Every PNG
    carries ``text`` (e.g. the run's parameters) and its figure's label and caption as text chunks
    (:func:`png_with_text`); a glued figure's are those of its ``{glue:figure}`` (:func:`glue_figures`).
    """
    folder = Path(folder)
    written: list[Path] = []
    taken: set[str] = set()
    directives = glue_figures(nb)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        label, k = figure_label(cell), 0
        hidden = any(t in HIDDEN for t in cell.get("metadata", {}).get("tags", []))
        for output in cell.get("outputs", []):
            image = _image(output)
            if image is None or (hidden and image[2] is None):
                continue
            ext, raw, glued = image
            stem = glued or (f"{label}_{k}" if label and k else label) or f"cell{index:03d}_{k}"
            while f"{stem}.{ext}" in taken:   # two cells with one label: the second gets its index
                stem = f"{stem}_cell{index:03d}"
            taken.add(f"{stem}.{ext}")
            if ext == "png":
                title, caption = directives.get(glued, (None, None))
                about = {"Title": title or label or glued or "", "Description": caption or figure_caption(cell) or "",
                         **(text or {})}
                raw = png_with_text(raw, {key: value for key, value in about.items() if value})
            folder.mkdir(parents=True, exist_ok=True)
            written.append(write_bytes_atomic(folder / f"{stem}.{ext}", raw))
            k += 1
    return written
