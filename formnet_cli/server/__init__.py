"""``formnet serve``: a local web page and HTTP API over the library (the ``serve`` extra).

:mod:`~formnet_cli.server.app` is the ASGI app (Starlette), :mod:`~formnet_cli.server.pool`
the worker processes behind a bounded queue, :mod:`~formnet_cli.server.work` what a worker
does with one upload, and ``static/`` the page (plain HTML, CSS and JavaScript).
"""
