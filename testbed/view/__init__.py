"""`testbed view`: a local web app to explore runs, comparisons and studies in the browser.

A small ASGI app (Starlette, served by uvicorn) with its own page: frames come from the same
panel plugins and grid as `testbed render` (`testbed.view.frames`), rendered once per seed and
kept, so that moving the epoch slider only swaps an image the browser already has.
"""
