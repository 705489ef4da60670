"""A plugin package that fails to load (an import error, a syntax error, a registration hook
that raises) takes only its own plugins down: every command still works with one `warning:`
line naming it, `testbed plugins` lists it as broken, and a scenario that names one of its
plugins is refused with a message that says the package failed to load.

The packages are real: a module and its dist-info on sys.path (in this process, so the
commands run in-process through `main()`), or on PYTHONPATH for the console script.
"""

from __future__ import annotations

import copy
import sys
import warnings

import pytest
import yaml
from conftest import CLIPPED_RMS_PACKAGE, TINY, cli, cli_here, third_party_package

import testbed
from testbed.config.scenario import scenario_model
from testbed.plugin_api.registry import BrokenPluginPackage, Registry, default_registry

# the package without its hook: each case below adds a working or a broken one
NORM = CLIPPED_RMS_PACKAGE[: CLIPPED_RMS_PACKAGE.index("@hookimpl")]

WORKING = NORM + '''

@hookimpl
def testbed_norms():
    return [clipped_rms]
'''

SYNTAX_ERROR = WORKING + "\ndef testbed_probes(:\n    return []\n"

# Each broken package would provide the norm `clipped_rms` and the probe `acme_probe`, and the
# error that `testbed plugins` shows for it.
BROKEN = {
    "import error": (
        "import missing_dep\n" + WORKING,
        "ModuleNotFoundError: No module named 'missing_dep'",
    ),
    "exception at import": (
        WORKING + '\nraise OSError("ACME_HOME is not set")\n',
        "OSError: ACME_HOME is not set",
    ),
    "syntax error": (
        SYNTAX_ERROR,
        f"SyntaxError: invalid syntax (acme_broken.py, line {SYNTAX_ERROR.splitlines().index('def testbed_probes(:') + 1})",
    ),
    "hook raising": (
        NORM + '''
from testbed.plugin_api import Probe


@plugin("acme_probe")
def acme_probe(params):
    """Watches nothing."""
    return Probe()


@hookimpl
def testbed_probes():  # registers fine, but its package is broken: it must not count either
    return [acme_probe]


@hookimpl
def testbed_norms():
    raise RuntimeError("licence server unreachable")
''',
        "testbed_norms raised RuntimeError: licence server unreachable",
    ),
    "hook returning a non-plugin": (
        NORM + '''

@hookimpl
def testbed_norms():
    return [ClippedRMS]
''',
        "testbed_norms returned <class 'acme_broken.ClippedRMS'>, not a Plugin; decorate its builder with @plugin",
    ),
}


def fresh_plugins() -> None:
    """Forget the plugins loaded so far: the next command loads them from sys.path again."""
    default_registry.cache_clear()
    scenario_model.cache_clear()


@pytest.fixture
def install(tmp_path, monkeypatch):
    """Install a package into this process; commands run from a working directory of their own."""
    modules: list[str] = []

    def installer(module: str, source: str, dist: str, version: str = "0.1", entry_point: str = "acme") -> None:
        root = tmp_path / "packages" / module
        root.mkdir(parents=True)
        monkeypatch.syspath_prepend(third_party_package(root, module, source, dist, version, entry_point)["PYTHONPATH"])
        modules.append(module)
        fresh_plugins()

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    yield installer
    for module in modules:
        sys.modules.pop(module, None)
    fresh_plugins()


@pytest.fixture(scope="module")
def builtins() -> dict[str, list[str]]:
    """The built-in plugins, loaded with no third-party package installed."""
    registry = Registry.load()
    assert not registry.broken
    return {kind: registry.names(kind) for kind in registry.plugins}


def write(name: str, data: dict) -> str:
    with open(name, "w") as f:
        yaml.safe_dump(data, f)
    return name


def warning_of(error: str, dist: str = "acme-broken 0.1") -> str:
    return f"warning: plugin package {dist} failed to load ({error}); its plugins are unavailable"


@pytest.mark.parametrize("case", BROKEN)
def test_a_broken_package_takes_down_only_its_own_plugins(case, install, builtins, tmp_path):
    source, error = BROKEN[case]
    install("acme_broken", source, "acme-broken")

    listing = cli_here("plugins")
    assert listing.returncode == 0, listing.stderr
    assert listing.stderr == ""
    assert listing.stdout.splitlines()[-2:] == [
        "broken plugin packages (failed to load; their plugins are unavailable):",
        f"  acme-broken 0.1: {error}",
    ]
    for name in builtins["norm"] + builtins["probe"] + builtins["optimizer"]:
        assert name in listing.stdout
    assert "clipped_rms" not in listing.stdout and "acme_probe" not in listing.stdout

    unrelated = cli_here("validate", write("tiny.yaml", TINY))
    assert unrelated.returncode == 0, unrelated.stderr
    assert unrelated.stderr.splitlines() == [warning_of(error)]
    assert unrelated.stdout.startswith("tiny.yaml: ok")

    uses_it = copy.deepcopy(TINY)
    uses_it["model"]["norm"] = {"name": "clipped_rms", "limit": 2.0}
    if case == "hook raising":
        uses_it["probes"] = ["metrics", "acme_probe"]
    refused = cli_here("run", write("uses_it.yaml", uses_it), "--out", "runs/uses_it", "-q")
    assert refused.returncode == 2, refused.stderr
    first, *errors = refused.stderr.splitlines()
    assert first == warning_of(error)
    note = f"; note: plugin package acme-broken 0.1 failed to load ({error})"
    assert errors[0] == f"error: uses_it.yaml: model.norm: unknown norm 'clipped_rms': known: {', '.join(builtins['norm'])}{note}"
    if case == "hook raising":
        assert errors[1:] == [f"error: uses_it.yaml: probes.1: unknown probe 'acme_probe': known: {', '.join(builtins['probe'])}{note}"]
    else:
        assert len(errors) == 1
    assert not (tmp_path / "work/runs").exists(), "nothing written for a refused scenario"

    # The registry the commands used has every built-in plugin, and nothing of the broken package.
    registry = default_registry()
    assert {kind: registry.names(kind) for kind in registry.plugins} == builtins
    assert [(b.distribution, b.error) for b in registry.broken] == [("acme-broken 0.1", error)]


def test_built_in_plugins_train_beside_a_broken_package_and_a_working_one(install, tmp_path):
    source, error = BROKEN["import error"]
    install("acme_broken", source, "acme-broken")
    install("acme_norms", WORKING, "acme-norms", "0.3", entry_point="acme_norms")
    data = copy.deepcopy(TINY)
    data["model"]["norm"] = {"name": "clipped_rms", "limit": 2.0}  # from the working package
    data["optimizer"] = {"name": "sgd", "lr": 0.1}
    data["seeds"] = "0-1"
    proc = cli_here("run", write("mixed.yaml", data), "--out", "runs/mixed", "-q")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [warning_of(error)]
    run_json = yaml.safe_load((tmp_path / "work/runs/mixed/run.json").read_text())
    assert {"kind": "norm", "name": "clipped_rms", "distribution": "acme-norms", "version": "0.3"} in run_json["plugins"]
    assert {"kind": "optimizer", "name": "sgd", "distribution": "testbed", "version": testbed.__version__} in run_json["plugins"]


def test_the_library_records_broken_packages_and_prints_nothing(install, capsys):
    source, error = BROKEN["syntax error"]
    install("acme_broken", source, "acme-broken")
    registry = Registry.load()
    assert [(b.distribution, b.error) for b in registry.broken] == [("acme-broken 0.1", error)]
    with pytest.warns(BrokenPluginPackage, match=r"^plugin package acme-broken 0.1 failed to load \(SyntaxError: "):
        default_registry()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        default_registry()  # loaded once per process: warned once
    assert capsys.readouterr() == ("", "")


def test_two_packages_registering_one_plugin_name_is_one_error_line(install):
    install("acme_one", WORKING, "acme-one", "1.0", entry_point="acme_one")
    install("acme_two", WORKING, "acme-two", "2.0", entry_point="acme_two")
    proc = cli_here("validate", write("tiny.yaml", TINY))
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert line.startswith("error: norm plugin 'clipped_rms' is registered twice: by acme-")
    assert "acme-one 1.0" in line and "acme-two 2.0" in line


def test_the_console_script_prints_the_warning_once_and_nothing_else(tmp_path):
    """Python's own warning display (two lines, with a line of testbed's source) stays out."""
    source, error = BROKEN["import error"]
    env = third_party_package(tmp_path, "acme_broken", source, "acme-broken", "0.1")
    write_to = tmp_path / "tiny.yaml"
    write_to.write_text(yaml.safe_dump(TINY))
    proc = cli("validate", "tiny.yaml", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [warning_of(error)]
