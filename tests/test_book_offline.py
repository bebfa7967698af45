"""The book renders offline: MathJax comes from the build, no page loads a script or style from the web.

Builds a one-page book with the project's own ``_config.yml`` and
``references.bib`` (a formula, the SRCC one of the introduction, and a
citation of the seed's report), as ``iqalib.book.build_html`` builds the real
one (warnings are errors), and reads the HTML.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.book  # every test reads one jupyter-book build (a subprocess, seconds)

ROOT = Path(__file__).resolve().parents[1]
PAGE = r"""# Offline math

Spearman's rank correlation, as the introduction writes it:
$\mathrm{SRCC} = 1 - \frac{6\sum_i d_i^2}{n(n^2-1)}$, and displayed:

$$
\mathrm{PLCC} = \frac{\sum_i (x_i - \bar x)(y_i - \bar y)}{\sqrt{\sum_i (x_i - \bar x)^2 \sum_i (y_i - \bar y)^2}}
$$

The seed's numbers come from its report {cite}`smartiqa`.

```{bibliography}
```
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    book = tmp_path_factory.mktemp("offline_book")
    shutil.copy(ROOT / "_config.yml", book / "_config.yml")
    (book / "book").mkdir()
    shutil.copy(ROOT / "book" / "references.bib", book / "book" / "references.bib")
    (book / "book" / "page.md").write_text(PAGE)
    (book / "_toc.yml").write_text(yaml.safe_dump({"format": "jb-book", "root": "book/page"}))
    executable = Path(sys.executable).parent / "jupyter-book"
    command = [str(executable) if executable.is_file() else "jupyter-book", "build", str(book),
               "--path-output", str(book / "out"), "--warningiserror", "--keep-going", "--quiet"]
    done = subprocess.run(command, cwd=book, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return book / "out" / "_build" / "html"


def test_mathjax_is_served_from_the_build(built):
    page = (built / "book" / "page.html").read_text()
    scripts = re.findall(r'<script[^>]*\bsrc="([^"]*mathjax[^"]*)"', page, flags=re.I)
    assert scripts == ["../_static/mathjax/tex-chtml.js"]
    # the script and what it loads at run time (its fonts) are in the build
    assert (built / "_static" / "mathjax" / "tex-chtml.js").stat().st_size > 100_000
    fonts = list((built / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff"))
    assert len(fonts) > 10


def test_no_page_loads_anything_from_the_web(built):
    for html in built.rglob("*.html"):
        text = html.read_text()
        remote = re.findall(r'<(?:script|link|img)[^>]*\b(?:src|href)="((?:https?:)?//[^"]+)"', text, flags=re.I)
        assert remote == [], f"{html.relative_to(built)} loads {remote}"
        assert "cdn.jsdelivr" not in text and "cdnjs" not in text


def test_formulas_reach_mathjax_and_the_seed_is_cited(built):
    page = (built / "book" / "page.html").read_text()
    # inline and display math, marked for MathJax (processHtmlClass "math"), TeX intact
    assert re.search(r'<span class="math notranslate nohighlight">\\\(\\mathrm\{SRCC\}', page)
    assert re.search(r'<div class="math notranslate nohighlight">\s*\\\[', page)
    assert "SMART-IQA" in page and "Technical report" in page
