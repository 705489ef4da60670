"""`testbed view` in a real browser (Debian's chromium through Playwright): a run's slider,
spikes and seeds, a comparison side by side, a study's heatmap leading to a cell's run, and
a run still training growing. A screenshot of each page is kept in the test's folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from conftest import TINY, scenario_file

pytest.importorskip("playwright")
from testbed.view.browser import chromium, chromium_path, watched_page  # noqa: E402

if chromium_path() is None:
    pytest.skip("no chromium (apt-get install chromium)", allow_module_level=True)

from testbed import api  # noqa: E402
from testbed.errors import Interrupted  # noqa: E402
from testbed.view.server import Background  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

# A detector sensitive enough to find spikes in a tiny run's noisy step losses.
SPIKY = {**TINY, "name": "tiny_spiky", "optimizer": {"name": "adam", "lr": 0.2}, "training": {"epochs": 40, "batch_size": 16},
         "probes": ["metrics", "step_loss", {"name": "spikes", "min_history": 5, "window": 10, "ratio": 1.1, "min_delta": 0.01, "z": 1.5},
                    {"name": "snapshots", "every": 4, "spike_steps": True}]}
WAIT_MS = 30_000
# Four panels rather than twenty: the same code path at a fifth of the drawing (test_view.py draws the default grid).
PANELS = ["token_emb", "seq_emb", "loss", "step_loss"]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("view-browser")


@pytest.fixture(scope="module")
def spiky(root) -> Path:
    out = root / "runs" / "spiky"
    api.run(scenario_file(root, SPIKY), out=out, store=False)
    api.spike_causes(out, sharpness=False)
    return out


@pytest.fixture(scope="module")
def browser():
    with chromium() as context:
        yield context


def served_page(browser, paths):
    app = Background(paths, panels=PANELS)
    return app, watched_page(browser)


def frame_shown(page, selector="#frame") -> str:
    return page.wait_for_function(f"document.querySelector('{selector}') && document.querySelector('{selector}').dataset.shown",
                                  timeout=WAIT_MS).json_value()


def test_a_run_slider_spikes_and_seeds(browser, spiky, tmp_path):
    import json

    app, page = served_page(browser, [spiky])
    try:
        page.goto(app.url + "#run/0")
        run = json.loads(page.request.get(app.url + "api/run/0").text())
        epochs = [str(e) for e in run["epochs"]]
        assert frame_shown(page) == epochs[-1] and page.inner_text("#epoch-label") == f"epoch {epochs[-1]}"
        assert "other" in page.inner_text("#seeds") or "mlp" in page.inner_text("#seeds")  # the forensics' cause counts
        first = page.get_attribute("#frame", "src")
        page.focus("#slider")
        page.keyboard.press("ArrowLeft")
        page.wait_for_function(f"document.querySelector('#frame').dataset.shown === '{epochs[-2]}'", timeout=WAIT_MS)
        assert page.inner_text("#epoch-label") == f"epoch {epochs[-2]}" and page.get_attribute("#frame", "src") != first
        shown = page.evaluate("fetch(document.querySelector('#frame').src).then(r => r.arrayBuffer()).then(b => b.byteLength)")
        assert shown > 10_000
        # a spike: clicking it jumps to the snapshot nearest its epoch and shows its forensics
        spikes = json.loads(page.request.get(app.url + "api/run/0/curves/0").text())["spikes"]
        assert spikes, "the tiny run's detector found no spike in seed 0"
        spike = spikes[0]
        nearest = min(run["epochs"], key=lambda e: (abs(e - spike["epoch"]), e))
        page.click("#curves .spike[data-k='0']")
        page.wait_for_function(f"document.querySelector('#frame').dataset.shown === '{nearest}'", timeout=WAIT_MS)
        assert f"Spike at epoch {spike['epoch']}: {spike['cause']}" in page.inner_text("#spikes")
        # the step itself, from the weights the snapshots probe kept around it (spike_steps: true)
        page.click("#step-after")
        page.wait_for_function("(document.querySelector('#frame').dataset.shown || '').endsWith(' after')", timeout=WAIT_MS)
        assert page.inner_text("#epoch-label").endswith("after the spike")
        step_urls = [app.url + f"api/run/0/spike/0/{spike['start']}-{spike['end']}/{which}.png" for which in (0, 1)]
        before, after = (page.request.get(url) for url in step_urls)
        assert before.status == after.status == 200 and before.body() != after.body()
        page.screenshot(path=str(tmp_path / "run.png"), full_page=True)
        # another seed: its row picks it, its curves and frames follow
        page.click("#seeds tbody tr:nth-child(3)")
        page.wait_for_function("document.querySelector('#curve-seed').textContent === '2'", timeout=WAIT_MS)
        page.wait_for_function("document.querySelector('#frame').src.includes('/frame/2/')", timeout=WAIT_MS)
        frame_shown(page)
        # downloads and path safety, as the page's own requests
        assert page.request.get(app.url.rstrip("/") + page.get_attribute("#svg", "href")).headers["content-type"].startswith("image/svg")
        assert page.request.get(app.url + "files/0/%2e%2e/%2e%2e/etc/passwd").status == 404
        assert page.console_errors == []
    finally:
        page.close()
        app.stop()


def test_a_comparison_side_by_side_on_one_slider(browser, spiky, root, tmp_path):
    other = scenario_file(root, {**SPIKY, "name": "tiny_sgd", "optimizer": {"name": "sgd", "lr": 0.05}})
    report = root / "reports" / "pair"
    api.compare([spiky, other], out=report, store=False)
    app, page = served_page(browser, [report])
    try:
        page.goto(app.url + "#comparison/0")
        frame_shown(page, "#fa")
        frame_shown(page, "#fb")
        assert page.get_attribute("#fa", "src") != page.get_attribute("#fb", "src")
        page.focus("#slider")
        page.keyboard.press("Home")
        page.wait_for_function("document.querySelector('#fa').dataset.shown === '0' && document.querySelector('#fb').dataset.shown === '0'",
                               timeout=WAIT_MS)
        assert page.inner_text("#epoch-label") == "epoch 0"
        assert "comparison.csv" in page.inner_text("#tables")
        page.screenshot(path=str(tmp_path / "comparison.png"), full_page=True)
        assert page.console_errors == []
    finally:
        page.close()
        app.stop()


def test_a_study_cell_opens_its_run(browser, root, tmp_path):
    cell = scenario_file(root, {**TINY, "name": "tiny_cell", "probes": ["metrics", "step_loss", "spikes", {"name": "snapshots", "every": 2}]})
    study = root / "study.yaml"
    study.write_text(yaml.safe_dump({"name": "tiny_study", "scenarios": [cell.name], "seeds": "0-1",
                                     "axes": {"model.hidden": [4, 8], "training.batch_size": [16, 48]}}))
    out = root / "sweeps" / "tiny"
    api.sweep(study, out=out, store=False)
    app, page = served_page(browser, [out])
    try:
        page.goto(app.url + "#study/0")
        page.wait_for_selector("#heat td.cell")
        assert page.locator("#heat td.cell").count() == 4
        page.screenshot(path=str(tmp_path / "study.png"), full_page=True)
        target = page.locator("#heat td.cell").nth(3)
        title = target.get_attribute("title")
        target.click()
        page.wait_for_function("location.hash.startsWith('#run/')", timeout=WAIT_MS)
        frame_shown(page)
        assert title.split()[0].split("=")[-1] in page.inner_text("#where") or page.inner_text("h2") == "tiny_cell"
        assert page.console_errors == []
    finally:
        page.close()
        app.stop()


def test_a_run_still_training_grows_then_lands(browser, root, tmp_path):
    """A real training, stopped and continued by steps (as a long run writes its checkpoints
    while the page is open): its curves grow, then the finished run replaces it."""
    scenario = scenario_file(root, {**TINY, "name": "tiny_live", "training": {"epochs": 8, "batch_size": 16}})
    out = root / "runs" / "live"

    def train_until(epoch):
        def stop(event):
            if event.epoch == epoch:
                raise KeyboardInterrupt

        with pytest.raises(Interrupted):
            api.run(scenario, out=out, store=False, checkpoint_every=1, progress=stop)

    train_until(3)
    app, page = served_page(browser, [out])
    points = "document.querySelector('#curves polyline') ? document.querySelector('#curves polyline').getAttribute('points').split(' ').length : 0"
    try:
        page.goto(app.url + "#run/0")
        page.wait_for_selector("#live")
        page.wait_for_function(f"{points} > 0", timeout=WAIT_MS)
        before = page.evaluate(points)
        train_until(6)
        page.wait_for_function(f"{points} > {before}", timeout=WAIT_MS)
        assert "training" in page.inner_text("#live")
        page.screenshot(path=str(tmp_path / "live.png"), full_page=True)
        api.run(scenario, out=out, store=False, checkpoint_every=1)  # continues to the end and lands
        frame_shown(page)
        assert page.locator("#live").count() == 0
        assert page.console_errors == []
    finally:
        page.close()
        app.stop()
        shutil.rmtree(out, ignore_errors=True)


def test_an_export_opens_from_disk(browser, spiky, tmp_path):
    """`--export`: frames rendered ahead and a page that needs no server: opened as a file,
    its slider shows another frame, and it asks for nothing outside its folder."""
    from conftest import cli_here

    out = tmp_path / "export"
    r = cli_here("view", str(spiky), "--export", str(out), "--seed", "1", "--epochs", "0-40:8", "-q")
    assert r.returncode == 0, r.stderr
    frames = sorted(p.name for p in (out / "frames").iterdir())
    assert frames == [f"epoch{e:06d}.webp" for e in (0, 8, 16, 24, 32, 40)]  # snapshots every 4 epochs, one in two
    page = watched_page(browser)
    asked = []
    page.on("request", lambda request: asked.append(request.url))
    try:
        page.goto((out / "index.html").as_uri())
        page.wait_for_function("document.querySelector('#frame').complete && document.querySelector('#frame').naturalWidth > 0", timeout=WAIT_MS)
        assert page.inner_text("#epoch-label") == "epoch 40"
        page.focus("#slider")
        page.keyboard.press("Home")
        page.wait_for_function("document.querySelector('#frame').dataset.shown === '0' && document.querySelector('#frame').complete", timeout=WAIT_MS)
        assert page.get_attribute("#frame", "src") == "frames/epoch000000.webp"
        page.screenshot(path=str(tmp_path / "export.png"))
        assert all(url.startswith(out.as_uri()) or url.startswith("data:") for url in asked), asked
        assert page.console_errors == []
    finally:
        page.close()
