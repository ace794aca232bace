"""The chain rules and availability come from what each distortion class declares, not from family
names in the registry or the pipeline."""

from pathlib import Path

import pytest

from distortions import pipeline, registry
from distortions.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[2]


def test_pipeline_and_registry_name_no_family_or_distortion():
    for module in ("pipeline.py", "registry.py"):
        code = (ROOT / "distortions" / module).read_text().split('"""', 2)[2]  # below the module docstring
        code = "\n".join(line for line in code.splitlines() if not line.startswith("FAMILIES ="))
        for name in ("cnn", "photometric", "jpeg", "compression"):
            assert f'"{name}"' not in code, (module, name)


def test_stands_alone_is_read_from_the_class(monkeypatch):
    assert pipeline.chain_allowed(["gaussian_blur", "jpeg"])
    monkeypatch.setattr(registry.get("gaussian_blur"), "stands_alone", True)
    assert not pipeline.chain_allowed(["gaussian_blur", "jpeg"])
    assert pipeline.chain_allowed(["gaussian_blur"])


def test_ends_chain_and_combines_within_family_are_read_from_the_class(monkeypatch):
    assert not pipeline.chain_allowed(["jpeg", "gaussian_blur"])
    monkeypatch.setattr(registry.get("jpeg"), "ends_chain", False)
    assert pipeline.chain_allowed(["jpeg", "gaussian_blur"])
    assert not pipeline.chain_allowed(["gaussian_blur", "bilateral"])
    monkeypatch.setattr(registry.get("gaussian_blur"), "combines_within_family", True)
    monkeypatch.setattr(registry.get("bilateral"), "combines_within_family", True)
    assert pipeline.chain_allowed(["gaussian_blur", "bilateral"])


def test_available_names_asks_each_class(monkeypatch):
    assert "gaussian_blur" in registry.available_names()
    monkeypatch.setattr(registry.get("gaussian_blur"), "available", classmethod(lambda cls: False))
    assert "gaussian_blur" not in registry.available_names()


def test_opt_in_distortions_join_a_sampler_only_when_their_family_is_weighted():
    assert "cnn_autoencoder" not in pipeline.ChainSampler().names
    assert pipeline.ChainSampler(family_weights={"cnn": 1, "blur": 1}).names[-1] == "cnn_autoencoder"


def test_cli_refuses_a_feature_distance_it_cannot_import(tmp_path, capsys):
    assert (
        cli_main(["train-cnn-pool", str(tmp_path), "--models", "1", "--feature-distance", "no_such_module:f"])
        == 2
    )
    assert "--feature-distance" in capsys.readouterr().err


def test_cli_trains_with_the_metric_feature_term_by_default_and_without_it_on_none(tmp_path, monkeypatch):
    """The engine never imports the metric; its CLI names the metric's factory (the old pool's loss)."""
    from distortions import cli
    from distortions.cnn import trainer
    from metric.features import cnn_feature_distance

    seen = []

    def fake_train_pool(out_dir, **kwargs):
        seen.append(kwargs["feature_distance"])
        return {"models": [], "device": "cpu"}

    monkeypatch.setattr(trainer, "train_pool", fake_train_pool)
    assert cli.main(["train-cnn-pool", str(tmp_path), "--models", "1"]) == 0
    assert cli.main(["train-cnn-pool", str(tmp_path), "--models", "1", "--feature-distance", "none"]) == 0
    assert seen == [cnn_feature_distance, None]


@pytest.mark.parametrize("ops", [[{"name": "cnn_autoencoder"}], []])
def test_category_comes_from_the_class(ops):
    sampler = pipeline.ChainSampler(family_weights={"cnn": 1})
    assert sampler.category_of(ops) == "cnn"
    assert pipeline.ChainSampler().category_of(ops if not ops else [{"name": "jpeg"}]) == "traditional"
