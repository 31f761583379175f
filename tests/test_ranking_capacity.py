"""Capacity matching: MMoE / PLE / shared-bottom resized to DTN's parameter count, alone and in a rank run."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from sidkit.data.synthetic import SyntheticConfig, write_synthetic
from sidkit.errors import ConfigError
from sidkit.features.types import ItemRepresentation
from sidkit.ranking.capacity import match_capacity, model_parameters, parameter_count, scaled_dims
from sidkit.ranking.experiment import RankSettings, run_ranking
from sidkit.ranking.models import ModelConfig, build_model
from sidkit.ranking.saved import load_ranker
from sidkit.tokenizers.rq_kmeans import RQKMeans

TASKS = ("click", "like")


def _toy(items: int = 400, table: int = 512, tokens: int = 3) -> ItemRepresentation:
    rows = np.random.default_rng(0).integers(1, table, (items + 1, tokens))
    rows[-1] = 0
    return ItemRepresentation("toy", rows, table)


@pytest.mark.parametrize("name", ["mmoe", "ple", "shared-bottom"])
def test_widened_models_have_dtns_parameter_count(name):
    rep, config = _toy(), ModelConfig(embedding_dim=16)
    dtn = parameter_count(build_model("dtn", rep, 30, TASKS, config, num_user_fields=3))
    default = model_parameters(name, rep, 30, TASKS, config, num_user_fields=3)
    assert dtn > 2 * default  # the gap the matching closes
    match = match_capacity(name, rep, 30, TASKS, config, dtn, num_user_fields=3)
    # Counted again on a model built from the returned config, not taken from the search.
    built = parameter_count(build_model(name, rep, 30, TASKS, match.config, num_user_fields=3))
    assert built == match.params
    assert abs(built - dtn) / dtn < 0.01 and match.relative_gap == pytest.approx((built - dtn) / dtn)
    base = getattr(config, match.field)
    assert match.dims == getattr(match.config, match.field) and match.dims[0] > base[0]
    assert match.dims == scaled_dims(base, match.dims[0])  # every layer in proportion: (h, h/2) from (128, 64)
    # One unit of width either way is no closer to the target.
    for width in (match.dims[0] - 1, match.dims[0] + 1):
        other = model_parameters(name, rep, 30, TASKS, replace(config, **{match.field: scaled_dims(base, width)}),
                                 num_user_fields=3)
        assert abs(other - dtn) >= abs(built - dtn)


def test_a_smaller_target_narrows_the_model():
    rep, config = _toy(), ModelConfig(embedding_dim=16)
    default = model_parameters("mmoe", rep, 30, TASKS, config, num_user_fields=3)
    embeddings = model_parameters("mmoe", rep, 30, TASKS, replace(config, expert_dims=(1, 1)), num_user_fields=3)
    target = (default + embeddings) // 2
    match = match_capacity("mmoe", rep, 30, TASKS, config, target, num_user_fields=3)
    assert match.dims[0] < config.expert_dims[0] and abs(match.relative_gap) < 0.01


def test_models_without_a_width_and_unreachable_targets_are_refused():
    rep, config = _toy(), ModelConfig(embedding_dim=16)
    with pytest.raises(ConfigError, match="cannot resize 'dtn'"):
        match_capacity("dtn", rep, 30, TASKS, config, 10**6)
    with pytest.raises(ConfigError, match="at width 1"):
        match_capacity("mmoe", rep, 30, TASKS, config, 100)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("capacity")
    write_synthetic(SyntheticConfig(items=200, users=40, interactions=2000, dim=16, topics=(4, 4, 2), seed=0),
                    root / "synth")
    from sidkit.data.dataset import load_dataset

    RQKMeans(levels=2, codebook_size=8).fit(load_dataset(root / "synth").catalog.embeddings).save(root / "tok")
    return root / "synth", root / "tok"


def test_rank_match_params_trains_an_mmoe_of_dtns_size_and_saves_it(tiny, tmp_path):
    data, tok = tiny
    settings = RankSettings(features=("sid-prefix",), seeds=1, budget=64, epochs=1, patience=1, batch_size=512,
                            embedding_dim=8, history=3, model="dtn", save_models=False)
    dtn = run_ranking(data, tok, tmp_path / "dtn", settings, report=False)
    wide = run_ranking(data, tok, tmp_path / "wide", replace(settings, model="mmoe", match_params="dtn",
                                                             save_models=True), report=False)
    target, got = dtn.features[0].model_params, wide.features[0].model_params
    assert abs(got - target) / target < 0.02
    assert wide.features[0].resized is not None and wide.features[0].resized.startswith("expert_dims=")
    width = int(wide.features[0].resized.split("=")[1].split(",")[0])
    assert width > ModelConfig().expert_dims[0]
    assert "resized to dtn's parameter count" in wide.summary_path.read_text()
    ranker = load_ranker(tmp_path / "wide" / "models" / "sid-prefix" / "seed-0")  # the widened shape loads
    assert parameter_count(ranker.model) == got
    assert json.loads((tmp_path / "wide" / "settings.json").read_text())["match_params"] == "dtn"


def test_match_params_settings_are_checked(tiny, tmp_path):
    data, tok = tiny
    settings = RankSettings(features=("hash",), seeds=1, budget=32, epochs=1)
    with pytest.raises(ConfigError, match="unknown model 'dtm'"):
        run_ranking(data, tok, tmp_path / "a", replace(settings, match_params="dtm"))
    with pytest.raises(ConfigError, match="--model dtn cannot be resized"):
        run_ranking(data, tok, tmp_path / "b", replace(settings, model="dtn", match_params="mmoe"))


def test_more_seeds_resume_a_finished_run(tiny, tmp_path):
    data, tok = tiny
    settings = RankSettings(features=("hash",), seeds=1, budget=32, epochs=1, patience=1, batch_size=512,
                            embedding_dim=8, history=3, save_models=False)
    out = tmp_path / "run"
    first = run_ranking(data, tok, out, settings, report=False)
    more = run_ranking(data, tok, out, replace(settings, seeds=2), report=False)
    assert [r.seed for r in more.runs("hash")] == [0, 1]
    assert more.runs("hash")[0].train_seconds == first.runs("hash")[0].train_seconds  # kept, not run again
    # A settings file from before match_params existed resumes as the default (None).
    stored = json.loads((out / "settings.json").read_text())
    del stored["match_params"]
    (out / "settings.json").write_text(json.dumps(stored))
    again = run_ranking(data, tok, out, replace(settings, seeds=2), report=False)
    assert [r.train_seconds for r in again.runs("hash")] == [r.train_seconds for r in more.runs("hash")]
