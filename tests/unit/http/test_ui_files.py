"""The web UI's files as the package ships them: every module an import names exists, nothing is fetched
from another origin, and nothing needs the inline script or style the page's Content-Security-Policy
forbids. (The pages themselves are tested in Chromium: tests/integration/test_web_ui.py.)"""

from __future__ import annotations

import re

from ottermq.http.ui import FILES, INDEX, static_file

_IMPORT = re.compile(r"""^\s*import\s[^;]*?from\s+"\./([^"]+)";""", re.MULTILINE | re.DOTALL)
_URL = re.compile(r"https?://[^\s\"'`)]+")
_SVG_NAMESPACE = "http://www.w3.org/2000/svg"


def test_the_page_and_its_modules_are_served() -> None:
    assert {INDEX, "app.js", "app.css", "api.js", "list.js", "chart.js"} <= set(FILES)
    page = FILES[INDEX][0].decode()
    for name in re.findall(r'(?:src|href)="/ui/([^"]+)"', page):
        assert name in FILES, name
    response = static_file("app.js")
    assert response is not None and response.content_type.startswith("text/javascript")
    assert static_file("../ui.py") is None and static_file("nope.js") is None


def test_every_import_names_a_shipped_module() -> None:
    for name, (body, _) in FILES.items():
        if name.endswith(".js"):
            for target in _IMPORT.findall(body.decode()):
                assert target in FILES, f"{name} imports {target}, which is not shipped"


def test_nothing_comes_from_another_origin_and_nothing_is_inline() -> None:
    for name, (body, _) in FILES.items():
        text = body.decode()
        assert [url for url in _URL.findall(text) if url != _SVG_NAMESPACE] == [], name
        # The CSP allows no inline code: no <script> body, no style attributes, no eval-like calls.
        assert "style=" not in text and "innerHTML" not in text and "eval(" not in text, name
        assert "new Function" not in text, name
    page = FILES[INDEX][0].decode()
    assert re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page) is None
