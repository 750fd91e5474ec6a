"""The web UI's files: GET / (the page) and GET /ui/{file} (its ES modules and stylesheet).

Strategy: the UI is plain ES modules and CSS in `static/` (no build step); the broker only serves them,
and everything the UI shows or changes goes through the public management API with the credentials the
login form keeps in the tab's sessionStorage. The files are read once, at import: they are small, and a
request never touches the disk. Only names found in `static/` are served (no path from the request ever
reaches the filesystem). A Content-Security-Policy keeps the page to its own origin's scripts and styles.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from ottermq.http.interface import Response

STATIC_DIR: Final = Path(__file__).with_name("static")
INDEX: Final = "index.html"
_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# Nothing but the broker's own origin: the UI loads no CDN, font or image from elsewhere, and may not be
# framed (clickjacking of the close / delete / purge buttons).
_HEADERS: Final = (
    (
        "content-security-policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
)


def _load() -> dict[str, tuple[bytes, str]]:
    files: dict[str, tuple[bytes, str]] = {}
    for path in sorted(STATIC_DIR.iterdir()):
        content_type = _TYPES.get(path.suffix)
        if path.is_file() and content_type is not None:
            files[path.name] = (path.read_bytes(), content_type)
    return files


FILES: Final = _load()


def static_file(name: str) -> Response | None:
    """The response for one file of the UI, or None when there is no such file."""
    found = FILES.get(name)
    if found is None:
        return None
    body, content_type = found
    return Response(200, body, content_type, list(_HEADERS))
