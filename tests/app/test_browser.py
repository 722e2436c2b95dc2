"""End to end in a real browser: `quilt app` served on a small published dataset, driven by headless Chromium
through Playwright. Opens each tab, filters, searches, flags, runs a zero-shot query and reads the leaderboard,
saving a screenshot per tab to docs/screenshots/ (the README shows them).

Screenshots go to docs/screenshots/ when QUILT_UPDATE_SCREENSHOTS=1 or when one is missing there, else to the
test's temporary folder (so a test run leaves the working tree clean).

Needs the app extra (gradio, faiss-cpu, playwright) and a Chromium binary (Debian's `chromium`; `.ci/run` installs
it). Playwright's own browser download is never used: the system binary is passed as `executable_path`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
TIMEOUT_MS = 60_000


def find_chromium() -> str | None:
    """$QUILT_CHROMIUM, else a Chromium or Chrome on the PATH."""
    if os.environ.get("QUILT_CHROMIUM"):
        return os.environ["QUILT_CHROMIUM"]
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def browser():
    pytest.importorskip("gradio", reason="the app extra is not installed: pip install 'quilt_hf[app]'")
    pytest.importorskip("faiss", reason="the app extra is not installed: pip install 'quilt_hf[app]'")
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install "
                                                                       "'quilt_hf[app]'")
    executable = find_chromium()
    if executable is None:
        pytest.skip("no Chromium found (install Debian's chromium, or set QUILT_CHROMIUM=/path/to/chrome)")
    with playwright_api.sync_playwright() as playwright:
        # launch() gives each run a fresh temporary profile (the --user-data-dir it manages itself).
        instance = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield instance
        instance.close()


@pytest.fixture(scope="module")
def served_app(pairs_dataset, eval_results, tiny_clip_dir, tmp_path_factory):
    from quilt_hf.app.backend import AppBackend
    from quilt_hf.app.ui import build_app

    work = tmp_path_factory.mktemp("served")
    backend = AppBackend(str(pairs_dataset), models=[str(tiny_clip_dir)], results=[str(eval_results)],
                         flags=str(work / "flags.jsonl"), cache_dir=str(work / "cache"))
    app = build_app(backend)
    port = free_port()
    app.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/", backend
    app.close()


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def choose(page, elem_id: str, option: str) -> None:
    """Pick an option of a Gradio dropdown."""
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option", name=option, exact=True).click()


def screenshot_folder(tmp_path: Path) -> Path:
    names = ("browse", "search", "flag", "try_a_model", "leaderboard")
    update = os.environ.get("QUILT_UPDATE_SCREENSHOTS") == "1"
    if update or not all((SCREENSHOTS / f"{name}.png").is_file() for name in names):
        return SCREENSHOTS
    return tmp_path


def test_app_in_a_real_browser(browser, served_app, pairs_dataset, tmp_path):
    url, backend = served_app
    shots = screenshot_folder(tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)

    # Browse: the first page, then a filter, then a pair's detail view.
    page.wait_for_selector("#browse-grid img")
    assert "18 matching pairs" in page.inner_text("#page-info")
    choose(page, "filter-split", "validation")
    page.wait_for_function("document.querySelector('#page-info').innerText.includes('6 matching pairs')")
    assert page.locator("#browse-grid img").count() == 6
    page.locator("#browse-grid img").first.click()
    page.wait_for_function("document.querySelector('#browse-detail').innerText.includes('text window')")
    detail = page.inner_text("#browse-detail")
    assert "vid2" in detail and "histology score" in detail
    page.wait_for_selector("#browse-chunk img")
    page.screenshot(path=str(shots / "browse.png"), full_page=True)

    # Search by words: matching pairs only.
    open_tab(page, "Search")
    page.locator("#search-query textarea").fill("adenocarcinoma glands")
    page.locator("#search-button").click()
    page.wait_for_function("document.querySelector('#search-info').innerText.includes('contain every word')")
    hits = int(page.inner_text("#search-info").split()[0])
    assert hits == 3
    page.wait_for_selector("#search-results img")
    page.locator("#search-results img").first.click()
    page.wait_for_function("document.querySelector('#search-detail').innerText.includes('adenocarcinoma')")
    page.screenshot(path=str(shots / "search.png"), full_page=True)
    searched = backend.search_words("adenocarcinoma glands")[0]

    # Flag the pair selected in Search; the flag lands in the flags file, not in the dataset.
    open_tab(page, "Flag")
    page.wait_for_function(f"document.querySelector('#flag-row input').value == '{searched}'")
    page.get_by_text("wrong text:", exact=False).click()
    page.locator("#flag-note textarea").fill("caption describes another field")
    page.locator("#flag-reviewer textarea").fill("browser test")
    page.locator("#flag-save").click()
    page.wait_for_function("document.querySelector('#flag-status').innerText.includes('Saved')")
    page.wait_for_function("document.querySelector('#flag-table').innerText.includes('caption describes')")
    saved = [json.loads(line) for line in backend.flags_path.read_text().splitlines()]
    assert [(f["reason"], f["note"], f["reviewer"]) for f in saved] == [
        ("wrong_text", "caption describes another field", "browser test")
    ]
    assert saved[0]["image_id"] == backend.store.take([searched], ["image_id"])[0]["image_id"]
    page.screenshot(path=str(shots / "flag.png"), full_page=True)

    # Try a model: zero-shot scores of an uploaded image, and the nearest captions.
    open_tab(page, "Try a model")
    image = pairs_dataset.parent / "query.png"
    backend.store.row(1)["image"].save(image)
    page.locator("#try-image input[type=file]").set_input_files(str(image))
    page.locator("#try-classes textarea").fill("tumour, normal tissue, inflammation")
    page.locator("#try-button").click()
    page.wait_for_function("document.querySelector('#try-scores').innerText.includes('%')")
    scores = page.inner_text("#try-scores")
    for name in ("tumour", "normal tissue", "inflammation"):
        assert name in scores
    _, caption_hits = backend.search_meaning(backend.models[0], image=backend.store.row(1)["image"])
    nearest = backend.captions([caption_hits[0][0]])[0]
    page.wait_for_function(f"document.querySelector('#try-captions').innerText.includes({nearest[:20]!r})")
    page.screenshot(path=str(shots / "try_a_model.png"), full_page=True)

    # Leaderboard: measured rows and the paper's published rows.
    open_tab(page, "Leaderboard")
    page.wait_for_function("document.querySelector('#board-table').innerText.includes('QuiltNet (paper)')")
    table = page.inner_text("#board-table")
    assert "my-quiltnet" in table and "71.25" in table and "published, not measured here" in table
    page.screenshot(path=str(shots / "leaderboard.png"), full_page=True)
    # Sortable: sort ascending by top-1 accuracy through the column's menu; the lowest row comes first.
    page.locator("#board-table [data-testid=header-2]").click()
    page.locator("#board-table [data-testid=header-2] button[aria-label='Open cell menu']").click()
    page.get_by_text("Sort ascending").first.click()
    page.wait_for_function(
        "(t => t.indexOf('BiomedCLIP (paper)') < t.indexOf('my-quiltnet'))(document.querySelector('#board-table')"
        ".innerText)"
    )
    cells = [line.strip() for line in page.inner_text("#board-table").splitlines()]
    order = [cells.index(m) for m in ("BiomedCLIP (paper)", "PLIP (paper)", "CLIP (paper)", "QuiltNet (paper)",
                                     "my-quiltnet")]
    assert order == sorted(order)  # 53 < 59 < 62 < 65 < 71.25
    page.close()
