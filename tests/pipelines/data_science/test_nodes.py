"""Training building blocks and model tests (minimum quality, invariance, direction)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from credit_scoring.config.data_science import (
    Candidate,
    CostParams,
    DataScienceParams,
    LeakageParams,
    SelectionParams,
)
from credit_scoring.core.encoding import category_codes, encode_categories
from credit_scoring.core.errors import ContractError
from credit_scoring.pipelines.data_science.nodes import check_leakage, select_model, split_data
from credit_scoring.training.metrics import best_threshold, business_cost
from credit_scoring.training.modeling import FitContext, directional_violations, fit_candidate

COST = CostParams(false_negative=10, false_positive=1)


def test_business_cost_counts_missed_defaults_ten_times():
    y = np.array([1, 1, 0, 0, 0])
    refuse = np.array([True, False, True, False, False])
    assert business_cost(y, refuse, COST) == 10 * 1 + 1 * 1


def test_best_threshold_is_the_brute_force_optimum():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    scores = np.round(rng.random(300) * 0.6 + y * 0.3, 2)  # ties on purpose
    threshold, cost = best_threshold(y, scores, COST)
    candidates = [*np.unique(scores), np.inf]
    brute = min(business_cost(y, scores >= t, COST) for t in candidates)
    assert cost == brute == business_cost(y, scores >= threshold, COST)


def test_best_threshold_accepts_everyone_when_refusing_never_pays():
    threshold, cost = best_threshold(np.array([0, 0, 0]), np.array([0.1, 0.5, 0.9]), COST)
    assert threshold == np.inf and cost == 0


def test_split_is_stratified_disjoint_and_reproducible(primary, contract):
    a = split_data(primary, contract)
    b = split_data(primary, contract)
    ids = {k: set(v["client_id"]) for k, v in a.items()}
    assert all(not (ids[x] & ids[y]) for x, y in itertools.combinations(ids, 2))
    assert sum(len(v) for v in ids.values()) == len(primary)
    rate = primary["TARGET"].mean()
    assert all(abs(v["TARGET"].mean() - rate) < 0.01 for v in a.values())
    pd.testing.assert_frame_equal(a["test"], b["test"])


def test_leakage_check_catches_a_feature_that_is_the_target(primary, contract, science):
    leaky = primary.assign(REPAYMENT_STATUS=primary["TARGET"] * 2.0 + 1)
    with pytest.raises(ContractError, match=r"REPAYMENT_STATUS.*max_single_feature_auc"):
        check_leakage(leaky, contract, science)
    warn = science.model_copy(
        update={"leakage": LeakageParams(max_single_feature_auc=0.85, action="warn")}
    )
    assert "REPAYMENT_STATUS" in check_leakage(leaky, contract, warn)["suspects"]
    assert check_leakage(primary, contract, science)["suspects"] == {}


def test_params_need_a_dummy_baseline(parameters):
    params = {**parameters["data_science"], "candidates": {"lr": {"kind": "logistic_regression"}}}
    with pytest.raises(ValidationError, match="dummy"):
        DataScienceParams.model_validate(params)


def test_encoding_maps_unknown_and_missing_categories_to_nan():
    frame = pd.DataFrame({"c": ["a", "b", "zzz", None], "n": [1.0, 2.0, 3.0, 4.0]})
    codes = category_codes(frame, {"c": ["b", "a"]})
    assert codes == {"c": ["b", "a"]}
    encoded = encode_categories(frame, codes)
    assert encoded["c"].tolist()[:2] == [1.0, 0.0] and encoded["c"].isna().tolist()[2:] == [
        True,
        True,
    ]


@pytest.fixture(scope="module")
def trained(primary, contract, processing, science):
    split = split_data(primary, contract)
    train = split["train"]
    x, y = train.drop(columns=["client_id", "TARGET"]), train["TARGET"].to_numpy()
    ctx = FitContext(
        processing.imputation,
        category_codes(x),
        3,
        0,
        tuple(science.monotone_increasing),
    )
    models = {
        name: fit_candidate(name, candidate, x, y, ctx, science.cost)
        for name, candidate in {
            "dummy": Candidate(kind="dummy"),
            "lightgbm": Candidate(kind="lightgbm", fixed={"n_estimators": 80, "num_leaves": 8}),
            "logistic_regression": Candidate(kind="logistic_regression"),
        }.items()
    }
    return models, split, science


def test_model_beats_the_dummy_baseline(trained):
    models, split, settings = trained
    test = split["test"]
    y = test["TARGET"].to_numpy()
    costs = {
        n: business_cost(y, m.decide(m.predict_proba(test)), settings.cost)
        for n, m in models.items()
    }
    assert costs["lightgbm"] < costs["dummy"] and costs["logistic_regression"] < costs["dummy"]


def test_invariance_fields_outside_the_model_do_not_change_the_score(trained):
    models, split, _ = trained
    test = split["test"].head(100)
    changed = test.assign(client_id=[f"other-{i}" for i in range(len(test))], APPLICATION_REF=12345)
    for model in models.values():
        np.testing.assert_array_equal(model.predict_proba(test), model.predict_proba(changed))


def test_directional_more_overdue_debt_never_lowers_the_risk(trained):
    models, split, settings = trained
    assert directional_violations(
        models["lightgbm"], split["test"], settings.monotone_increasing
    ) == {feature: 0 for feature in settings.monotone_increasing}
    client = split["test"].head(1)
    base = models["lightgbm"].predict_proba(client)[0]
    more = client.assign(
        BUREAU_AMT_CREDIT_SUM_OVERDUE_SUM=client["BUREAU_AMT_CREDIT_SUM_OVERDUE_SUM"] + 1e6
    )
    assert models["lightgbm"].predict_proba(more)[0] >= base


def test_directional_check_detects_a_model_that_breaks_the_rule(trained):
    models, split, settings = trained
    backwards = models["lightgbm"]

    class Inverted:
        features, kind, categories = backwards.features, "lightgbm", backwards.categories

        def predict_proba(self, frame):
            return 1 - backwards.predict_proba(frame)

    assert (
        sum(
            directional_violations(Inverted(), split["test"], settings.monotone_increasing).values()
        )
        > 0
    )


def test_small_data_selects_on_cross_validation_and_says_so(trained, contract):
    models, split, settings = trained
    rows = len(split["train"]) + len(split["validation"])
    chosen = {}
    for mode, threshold in (("auto", rows + 1), ("auto", rows), ("validation", 10**9)):
        params = settings.model_copy(
            update={"selection": SelectionParams(mode=mode, cross_validation_below_rows=threshold)}
        )
        out = select_model(models, split["validation"], contract, params)
        table = out["comparison"]
        basis = table["selection_basis"].unique().tolist()
        key = "cv_business_cost" if basis == ["cross_validation"] else "business_cost"
        assert table[key].is_monotonic_increasing  # ranked on the basis it reports
        eligible = table[table["directional_violations"] == 0]
        assert out["selected"].name == eligible["candidate"].iloc[0]
        chosen[(mode, threshold)] = basis
    assert chosen[("auto", rows + 1)] == ["cross_validation"]  # below the row count
    assert chosen[("auto", rows)] == ["validation"]
    assert chosen[("validation", 10**9)] == ["validation"]
    # the out-of-fold cost is the training rows' cost at each model's own threshold
    lightgbm = models["lightgbm"]
    assert 0 < lightgbm.cv_business_cost < models["dummy"].cv_business_cost
    assert lightgbm.train_rows == len(split["train"])
