"""The forecast explorer: a page at ``/`` of the API, its JSON and CSV endpoints.

- :mod:`~milkprice.serving.explorer.views`: what a view shows (pure, from the predictor);
- :mod:`~milkprice.serving.explorer.schemas`: the JSON answers;
- :mod:`~milkprice.serving.explorer.routes`: the routes, the page and its assets
  (``static/``, shipped as package data; Plotly's JS from the installed ``plotly`` package).
"""

from milkprice.serving.explorer.routes import Explorer, build_explorer

__all__ = ["Explorer", "build_explorer"]
