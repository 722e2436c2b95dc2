"""The Gradio interface of ``quilt app``: five tabs wired to :class:`~quilt_hf.app.backend.AppBackend`.

Element ids (``elem_id``) are stable: the browser test and anyone scripting the app rely on them.
"""

# No `from __future__ import annotations` here: Gradio reads the `gr.SelectData` annotations at run time.

import logging
import re

from quilt_hf.app.backend import DEFAULT_TEMPLATE, AppBackend
from quilt_hf.app.store import MAGNIFICATION_NAMES
from quilt_hf.errors import UserFacingError
from quilt_hf.flags import FLAG_REASONS

logger = logging.getLogger(__name__)

PAGE_SIZE = 24
ANY = ""


def _gradio():
    try:
        import gradio as gr
    except ImportError as error:
        raise UserFacingError(
            "quilt app needs Gradio: pip install 'quilt_hf[app]' (gradio, faiss-cpu)"
        ) from error
    return gr


def build_app(backend: AppBackend):
    """The ``gradio.Blocks`` app for ``backend``."""
    gr = _gradio()
    store = backend.store

    def dropdown(label: str, choices: list[str], elem_id: str):
        return gr.Dropdown([("any", ANY)] + [(c, c) for c in choices], value=ANY, label=label, elem_id=elem_id,
                           allow_custom_value=False)

    def error_to_ui(function):
        def wrapped(*args):
            try:
                return function(*args)
            except UserFacingError as error:
                raise gr.Error(str(error)) from error

        return wrapped

    with gr.Blocks(title="quilt_hf: pairs, search, flags, models, leaderboard") as app:
        gr.Markdown(
            f"## quilt_hf · `{store.source}` · {store.num_rows:,} pairs\n"
            f"Models: {', '.join(f'`{m}`' for m in backend.models) or 'none given (search by words only)'} · "
            f"flags saved to `{backend.flags_path}`"
        )
        selected_row = gr.State(None)
        with gr.Tabs():
            # ---------------------------------------------------------------------------------------------
            with gr.Tab("Browse", id="browse", elem_id="tab-browse"):
                with gr.Row():
                    subset = dropdown("subset", store.choices("subset"), "filter-subset")
                    split = dropdown("split", store.choices("split"), "filter-split")
                    pathology = dropdown("sub-pathology", store.choices("pathology"), "filter-pathology")
                    magnification = dropdown("magnification", list(MAGNIFICATION_NAMES.values()),
                                             "filter-magnification")
                    video = dropdown("video", store.choices("video_id"), "filter-video")
                with gr.Row():
                    previous_button = gr.Button("◀ previous", elem_id="page-previous", size="sm")
                    page_number = gr.Number(value=1, precision=0, label="page", elem_id="page-number", minimum=1)
                    next_button = gr.Button("next ▶", elem_id="page-next", size="sm")
                    page_info = gr.Markdown(elem_id="page-info")
                grid = gr.Gallery(label="pairs", columns=6, height=520, allow_preview=False, elem_id="browse-grid")
                grid_rows = gr.State([])
                with gr.Row():
                    with gr.Column(scale=2):
                        detail = gr.Markdown("Select a pair to see its details.", elem_id="browse-detail")
                    with gr.Column(scale=1):
                        chunk_images = gr.Gallery(label="images of the same chunk", columns=3, height=260,
                                                  allow_preview=False, elem_id="browse-chunk")
                        flags_view = gr.Markdown(elem_id="browse-flags")

                def show_page(subset_, split_, pathology_, magnification_, video_, page_):
                    filters = backend.filters(subset_, split_, pathology_, magnification_, video_)
                    total = len(backend.store.select(filters))
                    pages = max(1, -(-total // PAGE_SIZE))
                    page_ = min(max(1, int(page_ or 1)), pages)
                    items, rows, total = backend.page(filters, page_ - 1, PAGE_SIZE)
                    info = f"{total:,} matching pairs · page {page_} of {pages}"
                    return items, rows, info, page_

                filter_inputs = [subset, split, pathology, magnification, video]
                for component in filter_inputs:
                    component.change(lambda: 1, None, page_number).then(
                        show_page, [*filter_inputs, page_number], [grid, grid_rows, page_info, page_number]
                    )
                page_number.submit(show_page, [*filter_inputs, page_number], [grid, grid_rows, page_info, page_number])
                next_button.click(lambda p: int(p or 1) + 1, page_number, page_number).then(
                    show_page, [*filter_inputs, page_number], [grid, grid_rows, page_info, page_number]
                )
                previous_button.click(lambda p: max(1, int(p or 1) - 1), page_number, page_number).then(
                    show_page, [*filter_inputs, page_number], [grid, grid_rows, page_info, page_number]
                )
                app.load(show_page, [*filter_inputs, page_number], [grid, grid_rows, page_info, page_number])

                def show_detail(rows, evt: gr.SelectData):
                    row = rows[evt.index]
                    text, chunk, flags = backend.detail(row)
                    return text, chunk, flags, row

                grid.select(show_detail, grid_rows, [detail, chunk_images, flags_view, selected_row])

            # ---------------------------------------------------------------------------------------------
            with gr.Tab("Search", id="search", elem_id="tab-search"):
                with gr.Row():
                    query = gr.Textbox(label="words (caption, medical text, terms); or a description when "
                                       "searching by meaning", elem_id="search-query", scale=4)
                    mode = gr.Radio(["words", "meaning"], value="words", label="search by",
                                    elem_id="search-mode", interactive=bool(backend.models))
                    search_model = gr.Dropdown(backend.models, value=backend.models[0] if backend.models else None,
                                               label="model", elem_id="search-model")
                with gr.Row():
                    query_image = gr.Image(type="pil", label="or an image: ranks images and captions",
                                           elem_id="search-image", height=200)
                    search_button = gr.Button("Search", variant="primary", elem_id="search-button")
                search_info = gr.Markdown(elem_id="search-info")
                results = gr.Gallery(label="matching pairs", columns=6, height=420, allow_preview=False,
                                     elem_id="search-results")
                result_rows = gr.State([])
                caption_hits = gr.Dataframe(headers=["row", "cosine", "caption"], label="captions nearest the image",
                                            elem_id="search-captions", interactive=False, wrap=True)
                search_detail = gr.Markdown(elem_id="search-detail")

                @error_to_ui
                def run_search(text, mode_, model_, image_):
                    import pandas as pd

                    if image_ is not None or mode_ == "meaning":
                        if not model_:
                            raise UserFacingError("search by meaning needs a model: start quilt app with --model")
                        image_hits, text_hits = backend.search_meaning(model_, text or "", image_)
                        rows = [r for r, _ in image_hits]
                        captions = backend.captions([r for r, _ in text_hits])
                        table = pd.DataFrame(
                            [[r, round(s, 3), c] for (r, s), c in zip(text_hits, captions)],
                            columns=["row", "cosine", "caption"],
                        )
                        info = f"{len(rows)} images ranked by meaning with `{model_}`"
                    else:
                        rows = backend.search_words(text or "")
                        table = pd.DataFrame(columns=["row", "cosine", "caption"])
                        info = f"{len(rows)} pairs contain every word of “{text}”" if text else "type some words"
                    return backend.gallery(rows), rows, table, info

                search_inputs = [query, mode, search_model, query_image]
                search_outputs = [results, result_rows, caption_hits, search_info]
                search_button.click(run_search, search_inputs, search_outputs)
                query.submit(run_search, search_inputs, search_outputs)

                def show_search_detail(rows, evt: gr.SelectData):
                    row = rows[evt.index]
                    return backend.detail(row)[0], row

                results.select(show_search_detail, result_rows, [search_detail, selected_row])

            # ---------------------------------------------------------------------------------------------
            with gr.Tab("Flag", id="flag", elem_id="tab-flag"):
                gr.Markdown(
                    "Select a pair in Browse or Search (or type its row number), pick a reason and save. Flags are "
                    f"appended to `{backend.flags_path}`; the dataset is never edited. "
                    "`quilt publish --drop_flagged` leaves flagged pairs out."
                )
                with gr.Row():
                    flag_row = gr.Number(label="pair (row number)", precision=0, elem_id="flag-row", minimum=0)
                    reason = gr.Radio([(f"{k.replace('_', ' ')}: {v}", k) for k, v in FLAG_REASONS.items()],
                                      label="reason", elem_id="flag-reason")
                with gr.Row():
                    note = gr.Textbox(label="note", elem_id="flag-note", scale=3)
                    reviewer = gr.Textbox(label="reviewer", elem_id="flag-reviewer", scale=1)
                flag_preview = gr.Markdown(elem_id="flag-preview")
                save = gr.Button("Save flag", variant="primary", elem_id="flag-save")
                flag_status = gr.Markdown(elem_id="flag-status")
                flag_table = gr.Dataframe(value=backend.flags_table, label="flags", interactive=False,
                                          elem_id="flag-table", wrap=True)

                selected_row.change(lambda r: r, selected_row, flag_row)

                def preview(row):
                    if row is None or not 0 <= int(row) < store.num_rows:
                        return "No pair selected."
                    record = store.take([int(row)], columns=[c for c in ("image_id", "caption") if c in store.columns])
                    return f"Pair {int(row)} `{record[0].get('image_id', '')}`: {record[0].get('caption', '')[:300]}"

                flag_row.change(preview, flag_row, flag_preview)

                @error_to_ui
                def save_flag(row, reason_, note_, reviewer_):
                    if row is None or not 0 <= int(row) < store.num_rows:
                        raise UserFacingError("choose a pair first (a row number shown in Browse)")
                    record = backend.flag(int(row), reason_ or "", note_ or "", reviewer_ or "")
                    return f"Saved: pair {int(row)} flagged **{record['reason']}**.", backend.flags_table()

                save.click(save_flag, [flag_row, reason, note, reviewer], [flag_status, flag_table])

            # ---------------------------------------------------------------------------------------------
            with gr.Tab("Try a model", id="try", elem_id="tab-try"):
                with gr.Row():
                    with gr.Column():
                        try_model = gr.Dropdown(backend.models, value=backend.models[0] if backend.models else None,
                                                label="model", elem_id="try-model")
                        try_image = gr.Image(type="pil", label="image", elem_id="try-image", height=240)
                        class_names = gr.Textbox(label="class names (comma or new line separated)", lines=3,
                                                 elem_id="try-classes")
                        template = gr.Textbox(value=DEFAULT_TEMPLATE, label="prompt template", elem_id="try-template")
                        classify = gr.Button("Classify", variant="primary", elem_id="try-button")
                    with gr.Column():
                        scores = gr.Label(label="zero-shot scores", elem_id="try-scores", num_top_classes=10)
                        top_captions = gr.Dataframe(headers=["row", "cosine", "caption"], interactive=False,
                                                    label="dataset captions nearest the image", wrap=True,
                                                    elem_id="try-captions")

                @error_to_ui
                def run_zero_shot(model_, image_, names, template_):
                    import pandas as pd

                    if not model_:
                        raise UserFacingError("no model: start quilt app with --model DIR|NAME")
                    names_list = [n for n in re.split(r"[,\n]", names or "")]
                    label = backend.zero_shot(model_, image_, names_list, template_)
                    _, text_hits = backend.search_meaning(model_, image=image_)
                    captions = backend.captions([r for r, _ in text_hits])
                    table = pd.DataFrame([[r, round(s, 3), c] for (r, s), c in zip(text_hits, captions)],
                                         columns=["row", "cosine", "caption"])
                    return label, table

                classify.click(run_zero_shot, [try_model, try_image, class_names, template], [scores, top_captions])

            # ---------------------------------------------------------------------------------------------
            with gr.Tab("Leaderboard", id="leaderboard", elem_id="tab-leaderboard"):
                names = backend.leaderboard_names()
                gr.Markdown(
                    "Rows labelled *measured here* come from `quilt eval` JSON results, *model card* from a model's "
                    "`model-index`; *published, not measured here* are the Quilt-1M paper's zero-shot figures "
                    "(read off its chart). Values in %. Click a column header to sort."
                )
                board_name = gr.Dropdown(names, value=names[0] if names else None, label="task · benchmark",
                                         elem_id="board-name")
                board = gr.Dataframe(value=backend.leaderboard_table(names[0]) if names else None,
                                     interactive=False, elem_id="board-table", wrap=True)
                board_name.change(backend.leaderboard_table, board_name, board)
    return app
