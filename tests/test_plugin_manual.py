"""docs/plugins.md, the plugin author's manual, works as printed: every example in it is
installed as a third-party package (a module and its dist-info with an entry point, as pip
leaves them) and run for real through the command line on a tiny scenario, and each one's
effect is checked: the norms' gradients against autograd, the optimizer against its rule
written independently, the curriculum's p in metrics.csv, the probe's file and summary columns
against other probes' records, the panel's drawing against the quantities it shows. The
failures the manual describes are checked too."""

from __future__ import annotations

import copy
import csv
import dataclasses
import importlib.util
import inspect
import json
import os
import re
import sys
import types
import typing
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import TINY, cli, cli_here, third_party_package

import testbed
from testbed.config.scenario import TaskConfig
from testbed.engine.gradients import loss_and_grad
from testbed.engine.model import Architecture, ParamSpace, forward, pair_index, per_seed_loss
from testbed.errors import UserError
from testbed.plugin_api import ENTRY_POINT_GROUP, Activation, Curriculum, Evaluation, Norm, Panel, Plugin, Probe, RunInfo, UpdateRule, hookimpl, plugin
from testbed.plugin_api.differentiable import Differentiable
from testbed.plugin_api.hookspecs import BASES, TestbedSpecs
from testbed.plugin_api.hookspecs import KINDS as KIND_HOOKS
from testbed.plugin_api.registry import Registry, check_entry_point_names

DOC = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
EXAMPLE = re.compile(r"<!-- example: (\w+) -->\n```python\n(.*?)\n```\n", re.S)
SCENARIO = re.compile(r"<!-- example-scenario -->\n```yaml\n(.*?)\n```\n", re.S)
# one example per kind, and a norm both with and without vjp
KINDS = {
    "my_soft_rms": Norm,
    "my_soft_rms_vjp": Norm,
    "my_squareplus": Activation,
    "my_lion": UpdateRule,
    "my_ramp": Curriculum,
    "my_weight_norm": Probe,
    "my_class_means": Panel,
}


def doc_examples() -> dict[str, str]:
    text = DOC.read_text()
    found = EXAMPLE.findall(text)
    assert text.count("<!-- example: ") == len(found), "every example marker is followed by a python block"
    assert len({name for name, _ in found}) == len(found), "example names are unique"
    return dict(found)


def dist_name(module: str) -> str:
    return module.replace("_", "-")


@pytest.fixture(scope="module")
def examples() -> dict[str, str]:
    return doc_examples()


@pytest.fixture(scope="module")
def env(examples, tmp_path_factory) -> dict[str, str]:
    """Every example installed as its own package, as a reader of the manual would."""
    root = tmp_path_factory.mktemp("site-packages")
    paths = []
    for module, source in examples.items():
        (root / module).mkdir()
        installed = third_party_package(root / module, module, source, dist_name(module), "0.1.0", entry_point=module)
        paths.append(installed["PYTHONPATH"])
    return {"PYTHONPATH": os.pathsep.join(paths)}


@pytest.fixture(scope="module")
def modules(examples, tmp_path_factory) -> dict[str, types.ModuleType]:
    """The examples imported in this process (without touching sys.path), for direct checks."""
    root = tmp_path_factory.mktemp("modules")
    loaded = {}
    for name, source in examples.items():
        path = root / f"{name}.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        loaded[name] = module
    yield loaded
    for name in loaded:
        sys.modules.pop(name, None)


def plugins_of(module: types.ModuleType) -> list[Plugin]:
    return [v for v in vars(module).values() if isinstance(v, Plugin)]


def built(module: types.ModuleType, *context, **params):
    (p,) = plugins_of(module)
    return p.build(p.params(**params), *context)


@pytest.fixture(scope="module")
def run_dir(env, tmp_path_factory) -> Path:
    """The manual's scenario, shrunk to seconds: every example plugin in one run, plus the
    built-in probes the checks compare against."""
    (text,) = SCENARIO.findall(DOC.read_text())
    data = yaml.safe_load(text)
    data.update(task=TINY["task"], training=TINY["training"], seeds=TINY["seeds"])
    data["curriculum"]["every"] = 2  # the switch of p within TINY's 4 epochs
    data["probes"] = [p for p in data["probes"] if not (isinstance(p, dict) and p.get("name") == "snapshots")]
    data["probes"] += [{"name": "snapshots", "every": 1}, {"name": "grad_norms", "per": "step"}]
    work = tmp_path_factory.mktemp("work")
    (work / "my_plugins.yaml").write_text(yaml.safe_dump(data))
    proc = cli("run", "my_plugins.yaml", "--out", "runs/mine", "-q", env=env, cwd=work)
    assert proc.returncode == 0, proc.stderr
    return work / "runs" / "mine"


def test_the_manual_has_one_example_per_kind_and_lists_them(examples, modules, env):
    assert set(examples) == set(KINDS)
    for name, module in modules.items():
        context = (TaskConfig(),) if KINDS[name] is Curriculum else ()
        assert isinstance(built(module, *context), KINDS[name]), name
    assert f'[project.entry-points."{ENTRY_POINT_GROUP}"]' in DOC.read_text()
    listing = cli("plugins", env=env | {"COLUMNS": "400"})  # wide enough that no name wraps
    assert listing.returncode == 0, listing.stderr
    for name, module in modules.items():
        assert plugins_of(module)[0].name in listing.stdout
        assert f"{dist_name(name)} 0.1.0" in listing.stdout


def test_the_examples_train_together(run_dir):
    resolved = yaml.safe_load((run_dir / "scenario.yaml").read_text())
    assert resolved["model"]["embedding_norm"]["name"] == "soft_rms"
    assert resolved["model"]["mlp_norm"] == {"name": "soft_rms_vjp", "softness": 0.2}
    assert resolved["model"]["activation"]["name"] == "squareplus"
    assert resolved["optimizer"]["name"] == "lion"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert np.isfinite(summary["per_seed"]["train_loss"]).all()


def test_the_curriculum_switches_p_in_metrics(run_dir):
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    p_of_epoch = {int(r["epoch"]): int(r["p"]) for r in rows}
    # task.p = 2, every = 2, max_p = 3: epochs 1-2 train with p = 2 (epoch 0 evaluates with epoch 1's p)
    assert p_of_epoch == {0: 2, 1: 2, 2: 2, 3: 3, 4: 3}
    assert len(rows) == 5 * 3


def test_the_probe_writes_its_file_and_summary_columns(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    seeds = summary["seeds"]
    with np.load(run_dir / "snapshots.npz") as z:
        assert list(z["epochs"]) == [0, 1, 2, 3, 4]
        names = [k for k in z.files if k.startswith("param/")]
        # (epochs, seeds) norm of all weights, from the snapshots probe's independent record
        norms = np.sqrt(sum((z[k].reshape(5, len(seeds), -1).astype(np.float64) ** 2).sum(-1) for k in names))
    with open(run_dir / "weight_norm.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(int(r["seed"]), int(r["epoch"])) for r in rows] == [(s, e) for e in range(5) for s in seeds]
    written = np.array([float(r["weight_norm"]) for r in rows]).reshape(5, len(seeds))
    np.testing.assert_allclose(written, norms, rtol=1e-5)
    np.testing.assert_allclose(summary["per_seed"]["final_weight_norm"], norms[-1], rtol=1e-5)
    with np.load(run_dir / "grad_norms.npz") as g:
        total = g["norms"][:, :, list(g["names"]).index("total")]  # (steps, seeds)
    np.testing.assert_allclose(summary["per_seed"]["max_grad_norm"], total.max(0), rtol=1e-5)


def autograd_reference(arch, space, flat, index, labels):
    leaf = flat.clone().requires_grad_(True)
    losses = per_seed_loss(forward(arch, space.views(leaf), index), labels)
    (grad,) = torch.autograd.grad(losses.sum(), leaf)
    return losses.detach(), grad


def test_the_norms_and_activation_differentiate_as_autograd(modules):
    plain = built(modules["my_soft_rms"], softness=0.3)
    by_hand = built(modules["my_soft_rms_vjp"], softness=0.3)
    act = built(modules["my_squareplus"])
    assert not plain.has_own_vjp() and by_hand.has_own_vjp() and act.has_own_vjp()
    g = torch.Generator().manual_seed(0)
    # radii from far inside the softness to far beyond it
    x = torch.randn(5, 40, 2, generator=g, dtype=torch.float64) * torch.logspace(-3, 2, 40, dtype=torch.float64)[:, None]
    grad = torch.randn(5, 40, 2, generator=g, dtype=torch.float64)
    torch.testing.assert_close(by_hand(x), plain(x))
    leaf = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(plain(leaf), leaf, grad)
    torch.testing.assert_close(by_hand.vjp(x, by_hand(x), grad), expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(plain.vjp(x, plain(x), grad), expected, rtol=1e-12, atol=1e-14)
    leaf = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(act(leaf), leaf, grad)
    torch.testing.assert_close(act.vjp(x, act(x), grad), expected, rtol=1e-10, atol=1e-12)

    # the whole hand-written training gradient, one norm at each site, against autograd
    arch = Architecture(d=2, hidden=5, n_tokens=3, seq_len=6, embedding_norm=plain, mlp_norm=by_hand, activation=act)
    space = ParamSpace(arch.shapes())
    flat = space.init([0, 1, 2]).double()
    tokens = torch.randint(3, (3, 17, 6), generator=g)
    labels = torch.randint(3, (3, 17), generator=g)
    index = pair_index(tokens, 3)
    losses, grad = loss_and_grad(arch, space.views(flat), index, labels)
    ref_losses, ref_grad = autograd_reference(arch, space, flat, index, labels)
    torch.testing.assert_close(losses, ref_losses, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-8, atol=1e-10)


def lion_reference(x, grads, lr, b1, b2, wd):
    """Lion written out in numpy float64, one step at a time."""
    x, m = x.copy(), np.zeros_like(x)
    for g in grads:
        c = b1 * m + (1 - b1) * g
        x = x * (1 - lr * wd) - lr * np.sign(c)
        m = b2 * m + (1 - b2) * g
    return x


def test_the_optimizer_follows_its_rule_and_keeps_seeds_apart(modules):
    lion = modules["my_lion"]
    g = torch.Generator().manual_seed(1)
    S, P, steps = 4, 9, 5
    x0 = torch.randn(S, P, generator=g, dtype=torch.float64)
    grads = [torch.randn(S, P, generator=g, dtype=torch.float64) for _ in range(steps)]
    lr = torch.linspace(1e-3, 1e-2, P, dtype=torch.float64).unsqueeze(0)  # per-coordinate rates, as the engine passes them
    rule = built(lion, betas=(0.8, 0.95), weight_decay=0.1)
    flat = x0.clone()
    for t, grad in enumerate(grads, 1):
        rule.update(flat, grad.clone(), lr, t)
    expected = lion_reference(x0.numpy(), [gr.numpy() for gr in grads], lr.numpy(), 0.8, 0.95, 0.1)
    np.testing.assert_allclose(flat.numpy(), expected, rtol=1e-12, atol=1e-15)
    assert not torch.equal(flat, x0)

    # float32 as in training: each seed's row is the same bits alone as among the others
    together, alone = x0.float(), [x0[j : j + 1].float() for j in range(S)]
    rules = [built(lion, weight_decay=0.1) for _ in range(S + 1)]
    for t, grad in enumerate(grads, 1):
        rules[0].update(together, grad.float(), lr.float(), t)
        for j in range(S):
            rules[j + 1].update(alone[j], grad[j : j + 1].float(), lr.float(), t)
    for j in range(S):
        assert torch.equal(together[j : j + 1], alone[j])


def test_the_panel_renders_through_the_command(run_dir, env):
    out = run_dir.parent / "frame.png"
    proc = cli("render", str(run_dir), "--panels", "class_means,seq_emb", "--out", str(out), env=env)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quantities(tmp_path_factory):
    """The quantities of 4 frames of a run of built-ins whose sizes all differ (F = 4, d = 2,
    n_tokens = 3, hidden = 7, L = 6, n = 5 snapshots), so a shape cannot match by accident."""
    from testbed.render import rundata
    from testbed.render.quantities import snapshot_quantities

    tmp_path = tmp_path_factory.mktemp("quantities")
    data = copy.deepcopy(TINY) | {"seeds": "0"}
    data["task"]["p"], data["model"]["hidden"] = 3, 7
    data["probes"] = ["metrics", "step_loss", "spikes", {"name": "snapshots", "every": 1}]
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(data))
    proc = cli_here("run", str(tmp_path / "tiny.yaml"), "--out", str(tmp_path / "run"), "-q")
    assert proc.returncode == 0, proc.stderr
    return snapshot_quantities(rundata.load(tmp_path / "run"), 0, np.array([0, 1, 2, 3]))


def test_the_panel_draws_each_class_mean(modules, quantities):
    """On the quantities of a run of built-ins: the panel's markers sit at the class means."""
    from matplotlib.figure import Figure

    q = quantities
    panel = built(modules["my_class_means"])
    ax = Figure().subplots()
    panel.setup(ax, q, panel.extent(q))
    assert ax.get_title() and ax.get_xlabel() and ax.get_legend() is not None
    labels = q.sentences.labels
    for i in range(q.n_frames):
        panel.update(q, i)
        xi = q.trace["xi"][i]
        np.testing.assert_allclose(panel.dots.get_offsets(), xi)
        for y, marker in panel.means.items():
            np.testing.assert_allclose(marker.get_offsets()[0], xi[labels == y].mean(0))
    assert set(panel.means) == set(np.unique(labels)) and len(panel.artists) == 1 + len(panel.means)


def reference_module() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("plugin_reference", DOC.with_name("plugin_reference.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_reference_is_the_code_s_docstrings():
    """The page's table of kinds and its reference section are what docs/plugin_reference.py
    makes of the docstrings now: edit a docstring without running it, and this fails."""
    reference = reference_module()
    page = DOC.read_text()
    assert reference.render(page) == page, "docs/plugins.md is stale: run python docs/plugin_reference.py"
    tampered = page.replace("**`Curriculum.restricts_logits() -> bool`**", "**`Curriculum.restricts_logits() -> int`**")
    assert tampered != page and reference.render(tampered) == page, "the generated part is rewritten, not kept"


CONTRACTS = (Norm, Activation, UpdateRule, Curriculum, Probe, Panel, Differentiable, RunInfo, Evaluation)


def test_every_public_member_of_the_contracts_is_documented_in_the_page():
    """Each public method, property and attribute of the base classes (and of what probes are
    given) has a docstring, which says "Required." exactly where the method is abstract, and
    appears in the page under its class's name."""
    reference = reference_module()
    page = DOC.read_text()
    for cls in CONTRACTS:
        assert cls.__doc__ and f"### {cls.__name__}\n" in page, cls
        for name in reference.public_names(cls):
            title, text = reference.member(cls, name)
            where = f"{cls.__name__}.{name}"
            if dataclasses.is_dataclass(cls) and name in {f.name for f in dataclasses.fields(cls)}:
                assert f"`{name}" in cls.__doc__, f"{where}: a field its docstring does not name"
                continue
            assert text, f"{where} has no docstring"
            assert f"**{title}**\n\n{text}\n" in page, where
            abstract = getattr(vars(cls).get(name), "__isabstractmethod__", False)
            assert text.startswith("Required.") == abstract, f"{where}: 'Required.' exactly where abstract"
        annotated = [n for n in vars(cls).get("__annotations__", {}) if not n.startswith("_")]
        assert all(n in reference.public_names(cls) for n in annotated)
    for kind, base in BASES.items():  # every kind's methods, inherited ones included, in its row of the table
        row = next(line for line in page.splitlines() if line.startswith(f"| {kind} | `{KIND_HOOKS[kind]}` |"))
        for name in reference.contract(base):
            documented = inspect.getdoc(getattr(base, name)) or ""
            if documented.startswith(("Required", "Optional")):
                assert f"`{name}(" in row, (kind, name)
    for word in ("restricts_logits", "combine", "steps_on_device", "forward_and_vjp"):
        assert page.count(word) >= 3, word  # in the prose, the table or the reference, and a docstring


def test_the_hooks_point_to_the_base_classes():
    """A hook's docstring says where a scenario chooses the kind and what build receives, and
    leaves the object's contract to its base class instead of restating it."""
    for kind, hook in KIND_HOOKS.items():
        text = " ".join(inspect.getdoc(getattr(TestbedSpecs, hook)).split())
        assert f"The contract: `{BASES[kind].__name__}`" in text, hook
        assert f"-> {BASES[kind].__name__}``" in text, hook
        assert len(inspect.getdoc(getattr(TestbedSpecs, hook)).splitlines()) <= 8, f"{hook}: the contract belongs in {BASES[kind].__name__}'s docstrings"
    assert "say the same as this page" not in DOC.read_text()


def test_forward_and_vjp_is_used_with_vjp_only_and_gives_call_s_and_vjp_s_bits():
    """What Differentiable's docstrings promise: the training step takes `forward_and_vjp` only
    from a class that overrides `vjp`, and every built-in norm and activation gives there the
    very bits of `__call__` (what evaluation and rendering use) and of `vjp`."""
    from testbed.plugin_api.differentiable import forward_and_backward
    from testbed.plugin_api.registry import default_registry

    class OnlyForward(Norm):  # forward_and_vjp without vjp: ignored, autograd differentiates
        def __call__(self, x):
            return x * 2.0

        def forward_and_vjp(self, x):
            raise AssertionError("called without an own vjp")

    x = torch.randn(3, 4, 2, dtype=torch.float64)
    y, back = forward_and_backward(OnlyForward(), x)
    torch.testing.assert_close(back(torch.ones_like(x)), torch.full_like(x, 2.0))

    registry, g = default_registry(), torch.Generator().manual_seed(3)
    shapes = {"norm": (3, 50, 2), "activation": (3, 20, 7)}
    checked = 0
    for kind, shape in shapes.items():
        for name in registry.names(kind):
            plugin_ = registry.get(kind, name)
            if not plugin_.source.startswith("testbed "):
                continue
            choices = [{}]  # the defaults, and each value of every Literal field (smooth's shapes, gelu's approximations)
            for field, info in plugin_.params.model_fields.items():
                if typing.get_origin(info.annotation) is typing.Literal:
                    choices += [{field: value} for value in typing.get_args(info.annotation)]
            for choice in choices:
                fn = plugin_.build(plugin_.params(**choice))
                assert fn.has_own_vjp(), (kind, name)
                x = torch.randn(*shape, generator=g) * torch.logspace(-3, 1, shape[1])[:, None]
                grad = torch.randn(*shape, generator=g)
                y, back = forward_and_backward(fn, x)
                assert torch.equal(y, fn(x)) and torch.equal(back(grad), fn.vjp(x, fn(x), grad)), (kind, name, choice)
                checked += 1
    assert checked >= 12


SHAPE = re.compile(r"`([\w.]+)` \(([\w, ]*?),?\)")


def documented_shapes(bullet: str) -> dict[str, list[str]]:
    """name -> its documented axes, from one `q.<dict>` bullet of the panel contract."""
    (text,) = [b for b in inspect.getdoc(Panel).split("\n- ") if b.startswith(bullet)]
    return {name: [axis.strip() for axis in axes.split(",") if axis.strip()] for name, axes in SHAPE.findall(" ".join(text.split()))}


def test_the_panel_contract_lists_every_quantity_with_its_shape(quantities):
    """What a panel is given, read off the code: every name in q.params, q.trace and q.tables
    is in Panel's docstring with the shape it has, and every public attribute of q, of its
    sentences and of its run is named there."""
    q, arch = quantities, quantities.run.arch
    sizes = {"F": q.n_frames, "d": arch.d, "n_tokens": arch.n_tokens, "L": arch.seq_len, "hidden": arch.hidden,
             "N": len(q.sentences.labels), "Nc": len(q.cloud_tokens), "n": len(q.history_epochs)}
    assert len(set(sizes.values())) == len(sizes), sizes  # no two sizes alike: a wrong axis cannot pass
    for bullet, arrays in (("`q.params`", q.params), ("`q.trace`", q.trace), ("`q.tables`", q.tables)):
        shapes = documented_shapes(bullet)
        assert set(shapes) == set(arrays), bullet
        for name, axes in shapes.items():
            assert tuple(sizes[a] for a in axes) == arrays[name].shape, (bullet, name, axes, arrays[name].shape)
    text = " ".join(inspect.getdoc(Panel).split())
    public = [f.name for f in dataclasses.fields(q) if not f.name.startswith("_")]
    public += [n for n, v in vars(type(q)).items() if not n.startswith("_") and (callable(v) or isinstance(v, property)) and n != "build"]
    for name in public:
        assert f"`q.{name}" in text, name
    for part, obj in (("sentences", q.sentences), ("run", q.run)):
        names = [f.name for f in dataclasses.fields(obj)] + [n for n in vars(type(obj)) if not n.startswith("_")]
        bullet = next(b for b in inspect.getdoc(Panel).split("\n- ") if b.startswith(f"`q.{part}`"))
        for name in names:
            if name in ("seed_index", "snapshot_index"):  # the render command's own look-ups, not a panel's
                continue
            assert f"`{name}" in bullet, (part, name)


FAILING = '''
import torch
from testbed.plugin_api import Params, Probe, hookimpl, plugin


@plugin("bare_rms")
def bare_rms(params):
    """A norm in the style before base classes: a bare function."""
    return lambda x: x / x.pow(2).mean(-1, keepdim=True).sqrt()


class Crash(Probe):
    def after_epoch(self, epoch, flat, evaluation):
        if epoch == 2:
            raise ValueError("the probe broke at epoch 2")


@plugin("crash")
def crash(params):
    """Fails in the middle of training."""
    return Crash()


@hookimpl
def testbed_norms():
    return [bare_rms]


@hookimpl
def testbed_probes():
    return [crash]
'''


def test_failures_as_the_manual_describes(tmp_path):
    env = third_party_package(tmp_path, "acme_failing", FAILING, "acme-failing", "0.1")
    wrong = copy.deepcopy(TINY)
    wrong["model"]["norm"] = "bare_rms"
    (tmp_path / "wrong.yaml").write_text(yaml.safe_dump(wrong))
    proc = cli("run", "wrong.yaml", "--out", "runs/wrong", "-q", env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        "error: norm plugin 'bare_rms' (acme-failing 0.1): build returned a function, not an instance of "
        "testbed.plugin_api.Norm; subclass it (see docs/plugins.md)"
    ]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())

    crashing = copy.deepcopy(TINY)
    crashing["probes"] = ["metrics", "crash"]
    (tmp_path / "crash.yaml").write_text(yaml.safe_dump(crashing))
    proc = cli("run", "crash.yaml", "--out", "runs/crash", "-q", env=env, cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "error: probe 'crash' (acme-failing 0.1) failed in after_epoch at epoch 2 (step 6): ValueError: the probe broke at epoch 2; "
        "the unfinished run is kept in runs/.crash.partial (traceback in runs/.crash.partial/error.log)"
    ]
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [".crash.partial"], "no run directory half-written"
    assert (tmp_path / "runs" / ".crash.partial" / "error.log").read_text().rstrip().endswith("ValueError: the probe broke at epoch 2")


def test_a_hook_returning_a_non_plugin_or_a_taken_name_is_a_user_error():
    def module_with(name: str, hook) -> types.ModuleType:
        module = types.ModuleType(name)
        module.testbed_norms = hookimpl(hook)
        return module

    not_plugin = module_with("acme_raw", lambda: [lambda x: x])
    with pytest.raises(UserError, match=r"acme_raw: testbed_norms returned .*, not a Plugin; decorate its builder with @plugin"):
        Registry.load(extra=[not_plugin])

    @plugin("rms")
    def rms(params):
        """Another rms."""

    taken = module_with("acme_taken", lambda: [rms])
    with pytest.raises(UserError, match=r"norm plugin 'rms' is registered twice: by ") as raised:
        Registry.load(extra=[taken])
    assert "acme_taken" in str(raised.value) and f"testbed {testbed.__version__}" in str(raised.value)


def test_two_packages_with_one_entry_point_name_is_a_user_error(tmp_path, monkeypatch):
    """pluggy would load only one of them, silently; the user is told which two clash."""
    for n in ("one", "two"):
        (tmp_path / n).mkdir()
        env = third_party_package(tmp_path / n, f"acme_{n}", "", f"acme-{n}", f"{len(n)}.0", entry_point="acme")
        monkeypatch.syspath_prepend(env["PYTHONPATH"])
    with pytest.raises(UserError) as raised:
        check_entry_point_names()
    (line,) = str(raised.value).splitlines()
    assert line.startswith("entry point 'acme' of group testbed.plugins is declared by both acme-")
    assert "acme-one 3.0" in line and "acme-two 3.0" in line
