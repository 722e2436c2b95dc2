import numpy as np
from PIL import Image

from quilt_hf.report import Report, pairs_grid


def test_report_writes_markdown_and_self_contained_html(tmp_path):
    picture = pairs_grid(
        [Image.fromarray(np.zeros((20, 20, 3), np.uint8))] * 2, ["first caption", "second " * 80], tmp_path / "g.png"
    )
    report = Report(tmp_path, "Demo")
    report.section("Pairs").text("Two pairs from `quilt curate`.").table(["a", "b"], [["1", "<2>"]]).image(
        picture, "a grid"
    ).text("**after** the table")
    md, page = report.write()
    assert "| 1 | <2> |" in md.read_text()
    assert "![a grid](g.png)" in md.read_text()
    text = page.read_text()
    assert "data:image/png;base64," in text and "&lt;2&gt;" in text and "<code>quilt curate</code>" in text
    assert text.index("<table>") < text.index("<figure>") < text.index("<strong>after</strong>")
