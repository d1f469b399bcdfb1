"""The scoring API in-process and over HTTP (`to_asgi()`), on a model the pipelines trained."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest

from credit_scoring.core.spec import json_records
from credit_scoring.storage.events import read_events
from credit_scoring.training.registry import load_model

# These use the trained project (a real `kedro run`): not in `make test-fast`.
pytestmark = pytest.mark.integration


def use_mlflow_store(project) -> str:
    """Point tracking and registry at the project's store (other tests move the registry)."""
    uri = f"sqlite:///{project / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def test_import_step_keeps_the_champions_version_threshold_and_features(
    bento_model: str, trained_project, service_module: ModuleType
):
    import bentoml

    uri = use_mlflow_store(trained_project)
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = client.get_model_version_by_alias("credit_scoring", "champion")
    model = bentoml.models.get(bento_model)
    spec = service_module.SPEC
    assert model.info.metadata["model_version"] == str(champion.version) == spec.model_version
    assert spec.run_id == champion.run_id
    bounds = json.loads((trained_project / "data/06_models/outlier_bounds.json").read_text())
    assert spec.outlier_bounds == bounds  # logged by the training run itself
    trained = load_model("models:/credit_scoring@champion")
    assert model.info.metadata["threshold"] == pytest.approx(trained.threshold) == spec.threshold
    assert model.info.metadata["features"] == trained.features == spec.features


def test_no_training_serving_skew(service_module, http, primary, client_features, trained_project):
    """For the same clients, the API's probabilities equal the pipeline's batch predictions."""
    use_mlflow_store(trained_project)
    trained = load_model("models:/credit_scoring@champion")
    ids = pd.Index(client_features["client_id"]).intersection(primary["client_id"])[:150]
    expected = trained.predict_proba(primary.set_index("client_id").loc[ids].reset_index())

    by_id = [http.get(f"/clients/{cid}/score").json()["probability"] for cid in ids[:60]]
    np.testing.assert_allclose(by_id, expected[:60], rtol=0, atol=1e-9)

    rows = client_features.set_index("client_id").loc[ids].reset_index()
    body = json_records(rows, service_module.SPEC.request_columns())
    batch = http.post("/predict_batch", json={"applications": body})
    assert batch.status_code == 200, batch.text
    scores = [p["probability"] for p in batch.json()["predictions"]]
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-9)
    single = http.post("/predict", json={"application": body[0]}).json()
    assert abs(single["probability"] - expected[0]) <= 1e-9


def test_no_training_serving_skew_with_an_xgboost_champion(
    mlflow_store, primary, client_features, service_module, xgboost_trained, trained_project
):
    """An XGBoost champion through the same chain as the LightGBM one: registered in MLflow
    (UBJ), imported into BentoML by the build step, scored by the service's scorer from the
    raw stored features; its probabilities equal the pipeline's (registry model) to 1e-9."""
    import bentoml

    from credit_scoring.config.loader import project_parameters
    from credit_scoring.core.spec import SPEC_FILE, ServingSpec
    from credit_scoring.ops.packaging import import_champion
    from credit_scoring.serving.scorer import Scorer
    from credit_scoring.training.registry import log_model

    with mlflow.start_run():
        info = log_model(xgboost_trained, primary, "credit_scoring")
    mlflow.MlflowClient().set_registered_model_alias(
        "credit_scoring", "champion", info.registered_model_version
    )
    conf = project_parameters(conf_source=trained_project / "conf")
    bounds = json.loads((trained_project / "data/06_models/outlier_bounds.json").read_text())
    imported = import_champion(
        "credit_scoring",
        fallback={  # what a training run logs next to the model (serving/*.json)
            "data_contract": conf["data_contract"],
            "data_processing": conf["data_processing"],
            "outlier_bounds": bounds,
        },
    )
    try:  # the session's other tests serve `credit_scoring:latest`: leave it the LightGBM one
        spec = ServingSpec.load(imported.path_of(SPEC_FILE))
        scorer = Scorer(spec, Path(imported.path))
    finally:
        bentoml.models.delete(imported.tag)
    assert (spec.kind, spec.categories) == ("xgboost", xgboost_trained.categories)

    pipeline = load_model("models:/credit_scoring@champion")
    ids = pd.Index(client_features["client_id"]).intersection(primary["client_id"])[:150]
    expected = pipeline.predict_proba(primary.set_index("client_id").loc[ids].reset_index())
    body = json_records(
        client_features.set_index("client_id").loc[ids].reset_index(), spec.request_columns()
    )
    np.testing.assert_allclose(scorer.probabilities(body), expected, rtol=0, atol=1e-9)
    singles = [scorer.probability(record) for record in body[:20]]
    np.testing.assert_allclose(singles, expected[:20], rtol=0, atol=1e-9)


def test_service_class_in_process(service_module: ModuleType, application: dict[str, Any]):
    service = service_module.CreditScoring()
    try:
        payload = service_module.Application(**application)
        prediction = asyncio.run(service.predict(application=payload))
        assert 0 < prediction.probability < 1
        assert prediction.decision == (
            "refuse" if prediction.probability >= prediction.threshold else "accept"
        )
        explained = asyncio.run(service.explain(application=payload))
        assert explained.probability == pytest.approx(prediction.probability, abs=1e-12)
        assert service.__is_ready__()
    finally:
        service.close()


def test_explanations_are_exact_signed_and_sorted(service_module, http, application):
    import lightgbm as lgb
    import shap

    response = http.post("/explain", json={"application": application})
    assert response.status_code == 200, response.text
    body = response.json()
    contributions = body["contributions"]
    shap_values = [c["shap_value"] for c in contributions]
    assert [abs(v) for v in shap_values] == sorted((abs(v) for v in shap_values), reverse=True)
    assert {c["feature"] for c in contributions} == set(service_module.SPEC.features)
    assert any(v > 0 for v in shap_values) and any(v < 0 for v in shap_values)
    # additive in log-odds: base + contributions = the logit of the probability
    p = body["probability"]
    assert body["units"] == "log_odds"
    assert body["base_value"] + sum(shap_values) == pytest.approx(math.log(p / (1 - p)), abs=1e-9)
    # the same numbers as the shap library's TreeExplainer on the packaged booster
    packaged = service_module.champion.stored  # the BentoModel declared at class scope
    booster = lgb.Booster(model_file=str(packaged.path_of("mlflow_model/model.lgb")))
    transformer = service_module.SPEC.transformer()
    reference = shap.TreeExplainer(booster).shap_values(transformer.vector(application))
    reference = dict(zip(service_module.SPEC.features, np.ravel(reference), strict=True))
    for c in contributions:
        assert c["shap_value"] == pytest.approx(reference[c["feature"]], abs=1e-6)
    top = contributions[0]
    assert len(body["reasons"]) == 3
    assert ("raises" if top["shap_value"] > 0 else "lowers") in body["reasons"][0]


def test_unknown_client_is_404_and_a_raw_id_is_422(http):
    missing = http.get("/clients/" + "0" * 64 + "/score")
    assert missing.status_code == 404 and "No client with id" in missing.json()["error"]
    raw = http.get("/clients/100002/explain")
    assert raw.status_code == 422
    assert raw.json()["errors"][0]["field"] == "path.client_id"


BAD_REQUESTS = [
    (
        "missing",
        lambda a: {k: v for k, v in a.items() if k != "AMT_CREDIT"},
        "application.AMT_CREDIT",
        "missing",
    ),
    ("extra", lambda a: {**a, "SALARY_BONUS": 1.0}, "application.SALARY_BONUS", "extra_forbidden"),
    ("type", lambda a: {**a, "AMT_CREDIT": "a lot"}, "application.AMT_CREDIT", "float_parsing"),
    ("bound", lambda a: {**a, "EXT_SOURCE_2": 1.5}, "application.EXT_SOURCE_2", "less_than_equal"),
    (
        "negative",
        lambda a: {**a, "AMT_INCOME_TOTAL": -1},
        "application.AMT_INCOME_TOTAL",
        "greater_than_equal",
    ),
    ("category", lambda a: {**a, "CODE_GENDER": "Z"}, "application.CODE_GENDER", "literal_error"),
    ("null", lambda a: {**a, "DAYS_BIRTH": None}, "application.DAYS_BIRTH", "int_type"),
    # found by schemathesis: an integer beyond int64 was a 500 when the event was encoded
    (
        "int64",
        lambda a: {**a, "APPLICATION_REF": 2**70},
        "application.APPLICATION_REF",
        "less_than_equal",
    ),
]


@pytest.mark.parametrize(
    ("case", "mutate", "field", "rule"), BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS]
)
def test_invalid_fields_get_422_naming_the_field_and_rule(
    http, application, case, mutate, field, rule
):
    response = http.post("/predict", json={"application": mutate(dict(application))})
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert {"field": field, "rule": rule} in [
        {"field": e["field"], "rule": e["rule"]} for e in errors
    ]
    assert field in response.json()["error"]


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinities_are_refused(http, application, token):
    text = json.dumps({"application": {**application, "AMT_CREDIT": 1.0}})
    text = text.replace('"AMT_CREDIT": 1.0', f'"AMT_CREDIT": {token}')
    response = http.post("/predict", content=text, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "application.AMT_CREDIT"


def test_malformed_json_is_a_clear_422(http):
    response = http.post(
        "/explain", content=b'{"application": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422 and response.json()["errors"][0]["rule"] == "json_invalid"


def test_oversized_body_and_batch_get_413(http, service_module, application):
    limits = service_module.SPEC.limits
    huge = b'{"application": {"x": "' + b"a" * limits.max_body_bytes + b'"}}'
    response = http.post("/predict", content=huge, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "larger than" in response.json()["error"]
    too_many = [application] * (limits.max_batch_size + 1)
    response = http.post("/predict_batch", json={"applications": too_many})
    assert response.status_code == 413, response.text
    assert str(limits.max_batch_size) in response.json()["error"]


def test_every_scored_request_is_an_event_with_a_pseudonym_only(
    service_module, http, application, serving_db
):
    client_id, refused_id = "ab" * 32, "cd" * 32  # pseudonyms no other test uses
    scored = http.post("/predict", json={"application": application, "client_id": client_id}).json()
    refused = http.post(
        "/predict",
        json={"application": {**application, "CODE_GENDER": "?"}, "client_id": refused_id},
    )
    assert refused.status_code == 422
    deadline = time.monotonic() + 10
    while True:  # other tests' events may still be on their way: look for these two only
        events = read_events(serving_db)
        mine = events[events["client_id"] == client_id]
        if len(mine) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    time.sleep(0.5)  # one more flush period: a refused request's event would be there now
    events = read_events(serving_db)
    assert (events["client_id"] == client_id).sum() == 1
    assert not (events["client_id"] == refused_id).any()  # the refused request stored nothing
    event = events.set_index("request_id").loc[scored["request_id"]]
    assert event["client_id"] == client_id and event["endpoint"] == "predict"
    assert event["probability"] == scored["probability"] and event["decision"] == scored["decision"]
    assert event["model_version"] == service_module.SPEC.model_version
    assert event["features"] == application
    raw_id = http.post("/predict", json={"application": application, "client_id": "100002"})
    assert raw_id.status_code == 422  # a raw id is refused, never stored


def test_health_readiness_and_openapi(http):
    assert http.get("/healthz").status_code == 200
    assert http.get("/readyz").status_code == 200
    spec = http.get("/docs.json").json()
    assert {"/predict", "/predict_batch", "/explain", "/clients/{client_id}/score"} <= set(
        spec["paths"]
    )
    responses = spec["paths"]["/predict"]["post"]["responses"]
    assert {"200", "401", "413", "415", "422"} <= set(responses)
    assert spec["paths"]["/predict"]["post"]["security"] == [{"bearer": []}]
    assert {"/clients/search", "/clients/population", "/model/card"} <= set(spec["paths"])
    search = spec["paths"]["/clients/search"]["get"]["parameters"]
    assert [p["name"] for p in search] == ["client_id_prefix", "limit", "offset", "columns"]
    assert "healthz" not in str(spec["paths"].get("/healthz", {}).get("get", {}).get("security"))
    application = spec["components"]["schemas"]["Application"]
    assert application["additionalProperties"] is False
    assert application["properties"]["EXT_SOURCE_1"]["anyOf"][0]["maximum"] == 1.0


def test_finished_requests_are_released(service_module, http, application):
    """BentoML's timeout timer held every request's context for `timeout` seconds (the fix)."""
    import gc

    for _ in range(300):
        http.post("/predict", json={"application": application})
    from bentoml._internal.server.http import traffic

    from credit_scoring.serving.bentoml_fixes import CancellingTimeoutMiddleware

    assert traffic.TimeoutMiddleware is CancellingTimeoutMiddleware  # the fix is installed
    gc.collect()
    # A request's timeout timer fires `request_timeout_seconds` after the request started:
    # timers still pending that far ahead belong to the 300 finished requests.
    timeout = service_module.settings.request_timeout_seconds
    now = time.monotonic()  # the event loop's clock
    timers = [o for o in gc.get_objects() if isinstance(o, asyncio.TimerHandle)]
    pending = [t for t in timers if not t.cancelled() and t.when() - now > timeout / 2]
    assert len(pending) < 10


def test_the_request_id_is_in_the_header_the_body_and_the_event(http, application, serving_db):
    single = http.post("/predict", json={"application": application})
    batch = http.post("/predict_batch", json={"applications": [application, application]})
    for response in (single, batch):
        assert response.status_code == 200
        assert response.headers["x-request-id"] == response.json()["request_id"]
    wanted = {single.json()["request_id"]: 1, batch.json()["request_id"]: 2}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        events = read_events(serving_db)
        counts = events[events["request_id"].isin(wanted)]["request_id"].value_counts().to_dict()
        if counts == wanted:
            break
        time.sleep(0.1)
    assert counts == wanted  # one event per scored application, under the request's id


def test_an_empty_batch_is_a_422_naming_the_field(http):
    response = http.post("/predict_batch", json={"applications": []})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "applications"
    assert response.json()["errors"][0]["rule"] == "too_short"


def test_a_refusal_is_one_info_line_and_an_error_keeps_its_traceback(
    http, application, service_module, monkeypatch, caplog
):
    caplog.set_level(logging.INFO, logger="credit_scoring")
    refused = http.post("/predict", json={"application": {**application, "AMT_CREDIT": -1}})
    assert refused.status_code == 422
    lines = [r for r in caplog.records if refused.json()["request_id"] in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.INFO and lines[0].exc_info is None
    assert "Refused POST /predict: 422 invalid [application.AMT_CREDIT:greater_than_equal]" in (
        lines[0].getMessage()
    )
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]

    def boom(self, record):
        raise RuntimeError("the scorer failed")

    monkeypatch.setattr(service_module.Scorer, "probability", boom)
    caplog.clear()
    failed = http.post("/predict", json={"application": application})
    assert failed.status_code == 500
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None
    assert errors[0].getMessage().startswith("Exception on /predict [POST]")
