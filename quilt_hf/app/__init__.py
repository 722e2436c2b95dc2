"""``quilt app``: a Gradio web app to browse, search and flag pairs, try a model and read the leaderboard.

Optional: ``pip install 'quilt_hf[app]'``. The library never imports this package; flag storage, which
``quilt publish`` uses, lives in :mod:`quilt_hf.flags`.
"""
