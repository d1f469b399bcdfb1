"""The API routes the advisor dashboard needs: client search, comparison groups, model card."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd

from credit_scoring.storage.clients import OBSERVED_AT
from credit_scoring.storage.database import utc_now


def test_search_filters_and_pages_without_loading_the_portfolio(http, client_features):
    cash = client_features[client_features["NAME_CONTRACT_TYPE"] == "Cash loans"]
    rich = cash[cash["AMT_INCOME_TOTAL"] >= 200_000]
    query = "eq:NAME_CONTRACT_TYPE=Cash loans&min:AMT_INCOME_TOTAL=200000&limit=7"
    first = http.get(f"/clients/search?{query}").json()
    assert first["total"] == len(rich) > 7
    assert len(first["clients"]) == 7 and first["limit"] == 7
    second = http.get(f"/clients/search?{query}&offset=7").json()
    ids = [c["client_id"] for c in first["clients"] + second["clients"]]
    assert len(set(ids)) == len(ids) == 14
    assert set(ids) <= set(rich["client_id"])
    assert ids == sorted(ids)  # a stable order: pages never overlap
    for client in first["clients"]:
        assert client["NAME_CONTRACT_TYPE"] == "Cash loans"
        assert client["AMT_INCOME_TOTAL"] >= 200_000
        assert client[OBSERVED_AT] is not None
    prefix = ids[0][:3]
    by_prefix = http.get(f"/clients/search?client_id_prefix={prefix}").json()
    assert ids[0] in [c["client_id"] for c in by_prefix["clients"]]
    assert all(c["client_id"].startswith(prefix) for c in by_prefix["clients"])


def test_wrong_query_parameters_are_422_naming_each_one(http):
    cases = {
        "limit=500": "query.limit",
        "eq:NAME_CONTRACT_TYPE=Mortgage": "query.eq:NAME_CONTRACT_TYPE",
        "min:AMT_CREDIT=lots": "query.min:AMT_CREDIT",
        "eq:CODE_GENDER=F": "query.eq:CODE_GENDER",  # a protected attribute: no filter
        "salary=1": "query.salary",
        "client_id_prefix=100002%25": "query.client_id_prefix",
        "columns=DROP TABLE": "query.columns",
    }
    for query, field in cases.items():
        response = http.get(f"/clients/search?{query}")
        assert response.status_code == 422, query
        assert [e["field"] for e in response.json()["errors"]] == [field], query
    missing = http.get("/clients/population").json()
    assert missing["errors"][0]["field"] == "query.features"


def test_population_is_a_scored_sample_of_the_group(http, client_features, service_module):
    group = client_features[client_features["NAME_CONTRACT_TYPE"] == "Revolving loans"]
    body = http.get(
        "/clients/population?features=AMT_CREDIT&features=AMT_ANNUITY"
        "&eq:NAME_CONTRACT_TYPE=Revolving loans&sample=50"
    ).json()
    assert body["total"] == len(group) and body["sample_size"] == min(50, len(group))
    assert body["threshold"] == service_module.SPEC.threshold
    row = body["rows"][0]
    assert set(row) == {"AMT_CREDIT", "AMT_ANNUITY", "probability", "decision"}
    for row in body["rows"]:
        assert (row["decision"] == "refuse") == (row["probability"] >= body["threshold"])
    assert set(pd.DataFrame(body["rows"])["AMT_CREDIT"]) <= set(group["AMT_CREDIT"])


def test_model_card_has_metrics_costs_and_importance(http, service_module):
    card = http.get("/model/card").json()
    assert card["model_version"] == service_module.SPEC.model_version
    assert 0.5 < card["test_metrics"]["auc"] <= 1
    assert card["cost"] == {"false_negative": 10.0, "false_positive": 1.0}
    importance = [f["importance"] for f in card["global_importance"]]
    assert importance == sorted(importance, reverse=True) and importance[0] > 0
    used = {c["column"]: c for c in card["data_used"]}
    assert used["CODE_GENDER"]["sensitive"] and not used["CODE_GENDER"]["filterable"]
    assert "AMT_CREDIT" in card["filters"]["numeric"]


def test_a_client_score_says_when_its_data_were_observed(http, client_features):
    client_id = client_features["client_id"].iloc[3]
    body = http.get(f"/clients/{client_id}/score").json()
    observed = pd.Timestamp(body[OBSERVED_AT])
    assert utc_now() - timedelta(days=1) < observed.to_pydatetime() <= utc_now()
    listed = http.get(f"/clients/search?client_id_prefix={client_id}").json()["clients"][0]
    assert listed[OBSERVED_AT] == body[OBSERVED_AT]  # the same ISO text from both routes
