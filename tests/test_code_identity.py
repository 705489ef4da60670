"""The store's key knows the code by content: an edited plugin file (same version) is a new key,
so its runs retrain and never mix with the old code's seeds; an edited README is not."""

from __future__ import annotations

import yaml
from conftest import CLIPPED_RMS_PACKAGE, TINY, cli, third_party_package

from testbed.rundir import code_identity


def test_only_files_that_can_change_a_result_count(tmp_path):
    package = tmp_path / "pkg"
    (package / "__pycache__").mkdir(parents=True)
    (package / "core.py").write_text("EPS = 1e-5\n")
    (package / "README.md").write_text("about\n")
    before = code_identity.folder_digest([package])
    (package / "README.md").write_text("about, edited\n")
    (package / "__pycache__" / "core.cpython-311.pyc").write_bytes(b"\0")
    (package / ".core.py.swp").write_bytes(b"\0")
    assert code_identity.folder_digest([package]) == before
    (package / "core.py").write_text("EPS = 1e-3\n")
    assert code_identity.folder_digest([package]) != before


def test_the_identity_is_cheap_and_names_the_determinism_mode():
    from testbed.engine import arithmetic

    ident = code_identity.identity([{"kind": "norm", "name": "rms", "distribution": "testbed", "version": "0"}])
    assert ident["determinism"] == arithmetic.DETERMINISM and ident["plugin_files"] == {}
    assert len(ident["testbed_files"]) == 64


def test_an_edited_plugin_retrains_and_never_mixes_with_the_old_codes_seeds(tmp_path):
    env = third_party_package(tmp_path, "acme_norms", CLIPPED_RMS_PACKAGE, "acme-norms", "0.1")
    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump({**TINY, "model": {"hidden": 8, "norm": "clipped_rms"}}))
    store = tmp_path / "store"
    first = cli("run", str(scenario), "-q", "--seeds", "0-1", "--store", str(store), "--out", str(tmp_path / "a"), env=env)
    assert first.returncode == 0, first.stderr
    assert "trained seeds 0-1" in first.stdout
    module = tmp_path / "site" / "acme_norms.py"
    module.write_text(module.read_text().replace("1e-5", "1e-3"))  # same version, other numbers
    again = cli("run", str(scenario), "-q", "--seeds", "0-2", "--store", str(store), "--out", str(tmp_path / "b"), env=env)
    assert again.returncode == 0, again.stderr
    assert "trained seeds 0-2" in again.stdout and "from the store" not in again.stdout
    listed = cli("store", "ls", "--store", str(store), env=env)
    assert listed.stdout.count("no (gc removes it)") == 1 and listed.stdout.count(" yes") == 1
    gc = cli("store", "gc", "--store", str(store), env=env)
    assert gc.returncode == 0 and "runs of other code versions" in gc.stdout and "removed 1 item" in gc.stdout
    third = cli("run", str(scenario), "-q", "--seeds", "0-2", "--store", str(store), "--out", str(tmp_path / "c"), env=env)
    assert "trained nothing; seeds 0-2 served from the store (trained in" in third.stdout


def test_compare_and_sweep_without_the_store_keep_nothing_in_it(tmp_path):
    store = tmp_path / "store"
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(yaml.safe_dump({**TINY, "seeds": "0-1", "training": {"epochs": 2, "batch_size": 16}}))
    b.write_text(yaml.safe_dump({**TINY, "name": "b", "seeds": "0-1", "training": {"epochs": 2, "batch_size": 16}, "optimizer": {"name": "sgd", "lr": 0.1}}))
    compared = cli("compare", str(a), str(b), "-q", "--no-store", "--store", str(store), "--out", str(tmp_path / "report"))
    assert compared.returncode == 0, compared.stderr
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({"name": "st", "scenarios": [str(a)], "seeds": "0-1", "axes": {"model.hidden": [4, 8]}}))
    swept = cli("sweep", str(study), "-q", "--no-store", "--store", str(store), "--out", str(tmp_path / "sw"))
    assert swept.returncode == 0, swept.stderr
    assert (tmp_path / "sw" / "sweep.csv").is_file()
    assert not store.exists() or not any(store.iterdir())
