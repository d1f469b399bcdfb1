"""The dashboard's logic and layout (Streamlit's AppTest) against a real `bentoml serve`."""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from streamlit.testing.v1 import AppTest

from credit_scoring.config.loader import PROJECT_ROOT
from credit_scoring.storage.database import make_engine
from credit_scoring.storage.schema import AUDIT_TABLE
from tests.serving_fixtures import free_port

APP = str(PROJECT_ROOT / "src/credit_scoring/dashboard/app.py")
TIMEOUT = 60


@pytest.fixture
def dashboard_env(api_server: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> str:
    for name in ("CREDIT_SCORING_ENVIRONMENT", "CREDIT_SCORING_AUTH_SIGNING_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CREDIT_SCORING_DASHBOARD_API_URL", api_server["url"])
    return str(api_server["url"])


def signed_in(advisor: str = "advisor-apptest") -> AppTest:
    app = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert app.title[0].value == "Sign in (development)"
    assert "refused outside development" in app.warning[0].value
    app.text_input[0].set_value(advisor)
    app.button[0].click().run()  # the form's submit button
    assert not app.exception, app.exception
    return app


def _button(app: AppTest, label: str):
    return next(b for b in app.button if b.label == label)


def _labels(app: AppTest) -> list[str]:
    widgets = [*app.text_input, *app.multiselect, *app.selectbox, *app.number_input, *app.radio]
    return [w.label for w in widgets]


def test_an_advisor_finds_a_client_and_sees_score_decision_why_and_comparison(
    dashboard_env, client_features, api_server
):
    app = signed_in()
    assert app.title[0].value == "Client score and explanation"
    assert "never loads all clients" in app.info[0].value
    app.multiselect[0].select("NAME_CONTRACT_TYPE").run()
    contract = next(w for w in app.multiselect if w.label == "NAME_CONTRACT_TYPE: any of")
    contract.select("Revolving loans").run()
    _button(app, "Search").click().run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    revolving = client_features[client_features["NAME_CONTRACT_TYPE"] == "Revolving loans"]
    assert f"of {len(revolving):,} matching the filters" in app.markdown[0].value
    listed = app.dataframe[0].value
    assert set(listed["NAME_CONTRACT_TYPE"]) == {"Revolving loans"} and len(listed) == 20
    chosen = app.selectbox(key="chosen-client").value
    assert chosen in set(revolving["client_id"])
    _button(app, "Open client").click().run()
    assert not app.exception and not app.error, [e.value for e in app.error]

    headers = [h.value for h in app.header]
    assert headers == [
        "1. Find a client",
        "2. Score and decision",
        "3. Why: what moved this score",
        "4. The client's main information",
        "5. Compared with other clients",
    ]
    decision = next(m.value for m in app.markdown if m.value.startswith("**"))
    assert decision.startswith(("**✖ Refuse", "**✔ Accept"))
    captions = [m.value for m in app.markdown]
    assert any(c.startswith("Gauge: the risk score is") for c in captions)
    assert any(c.startswith("Bar chart of the 10 largest contributions") for c in captions)
    assert any(c.startswith("Histogram of ") for c in captions)  # the distribution's text
    assert any(c.startswith("Scatter plot of ") for c in captions)  # the bivariate plot's
    reasons = next(
        m.value for m in app.markdown if m.value.startswith("- ▲") or m.value.startswith("- ▼")
    )
    assert "raises the risk" in reasons or "lowers the risk" in reasons
    assert any(c == f"Client {chosen} (pseudonymised id)" for c in captions)
    assert len(app.get("plotly_chart")) == 4  # the gauge, the why, two comparisons
    # every filter and choice has a visible label (WCAG 3.3.2)
    assert all(label and label.strip() for label in _labels(app))

    # a comparison with similar clients, by filters
    app.radio[0].set_value("Similar clients (filters)").run()
    similar = next(w for w in app.multiselect if w.key == "compare-columns")
    similar.select("AMT_CREDIT").run()
    next(w for w in app.number_input if w.label == "AMT_CREDIT: at least").set_value(300000).run()
    assert not app.exception and not app.error
    group = client_features[client_features["AMT_CREDIT"] >= 300000]
    sample = next(m.value for m in app.markdown if m.value.startswith("A sample of"))
    assert f"of the {len(group):,} clients in the comparison group" in sample

    # the API wrote who looked at which client
    engine = make_engine(api_server["db"])
    deadline = time.monotonic() + 15
    while True:
        with engine.connect() as conn:
            rows = pd.read_sql(
                sa.text(
                    f"SELECT route, client_id FROM {AUDIT_TABLE} WHERE subject = 'advisor-apptest'"
                ),
                conn,
            )
        if (rows["client_id"] == chosen).any() or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    engine.dispose()
    assert {"/clients/search", "/clients/{client_id}/explain", "/clients/population"} <= set(
        rows["route"]
    )
    assert chosen in set(rows["client_id"])


def test_the_model_page_shows_metrics_threshold_in_money_and_importance(dashboard_env):
    app = signed_in()
    app.switch_page("screens/model.py").run()
    assert app.title[0].value == "Model card"
    text = " ".join(m.value for m in app.markdown)
    assert "A missed default costs the bank about 10.0 units" in text
    assert "without a model" in text
    metrics = app.dataframe[0].value
    assert metrics["measure"].iloc[0].startswith("AUC")
    assert any(m.value.startswith("Bar chart of the 15 most important") for m in app.markdown)
    app.switch_page("screens/transparency.py").run()
    assert app.title[0].value == "Transparency: how client data are used"
    used = app.dataframe[0].value
    assert "CODE_GENDER" in set(used["characteristic"])
    text = " ".join(m.value for m in app.markdown)
    assert "Human review" in text and "365 days" in text


def test_api_down_or_token_refused_gives_a_clear_message(dashboard_env, monkeypatch):
    monkeypatch.setenv("CREDIT_SCORING_DASHBOARD_API_URL", f"http://127.0.0.1:{free_port()}")
    app = signed_in()
    assert "cannot be reached" in app.error[0].value
    monkeypatch.setenv("CREDIT_SCORING_DASHBOARD_API_URL", dashboard_env)
    refused = AppTest.from_file(APP, default_timeout=TIMEOUT)
    refused.session_state["token"] = "not-a-token"
    refused.run()
    assert "did not accept your sign-in" in refused.error[0].value


def test_outside_development_there_is_no_development_sign_in(dashboard_env, monkeypatch):
    monkeypatch.setenv("CREDIT_SCORING_ENVIRONMENT", "production")
    app = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert "No sign-in is configured" in app.error[0].value
    assert not app.text_input and not app.button


def test_a_client_whose_data_are_old_gets_a_warning(
    dashboard_env, api_server, client_features, caplog
):
    client_id = str(client_features["client_id"].iloc[7])
    engine = make_engine(api_server["db"])
    with engine.begin() as conn:  # the feature store says these data are two years old
        conn.execute(
            sa.text("UPDATE client_features SET observed_at = :t WHERE client_id = :c"),
            {"t": "2024-11-01 00:00:00.000000", "c": client_id},
        )
    engine.dispose()
    app = signed_in()
    app.session_state["client_id"] = client_id
    with caplog.at_level("DEBUG"):
        app.run()
    assert client_id not in caplog.text  # the pseudonym is in the API's paths, not in logs
    warning = next(w.value for w in app.warning if "GDPR art. 5.1.d" in w.value)
    assert "collected on 01 November 2024" in warning and "more than 183 days" in warning
