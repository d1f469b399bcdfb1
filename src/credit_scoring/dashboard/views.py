"""The dashboard's pages: find a client and explain the score, the model card, transparency."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import streamlit as st

from credit_scoring.dashboard import present
from credit_scoring.dashboard.api import ApiError, ScoringApi
from credit_scoring.dashboard.settings import DashboardSettings

APP = "Credit advisor dashboard"
MAX_LISTED = 8  # columns the API lists per client (its `columns` parameter)


def _describe(text: str) -> None:
    """A sentence under a chart saying what it shows (its text alternative, WCAG 1.1.1), in
    body text: Streamlit's captions are too pale for 4.5:1 contrast."""
    st.markdown(present.plain(text))


def _context() -> tuple[DashboardSettings, ScoringApi]:
    context = st.session_state["context"]
    settings: DashboardSettings = context["settings"]
    return settings, ScoringApi(settings.api_url, context["token"], settings.timeout_seconds)


def _title(title: str) -> None:
    """A descriptive, distinct document title per page (WCAG 2.4.2) and the same heading."""
    st.set_page_config(page_title=f"{title} · {APP}", layout="wide")
    st.title(title)


def _card(api: ScoringApi) -> dict[str, Any]:
    card = st.session_state.get("card")
    if card is None:
        card = st.session_state["card"] = api.card()
    return dict(card)


def _card_only() -> tuple[DashboardSettings, dict[str, Any] | None]:
    """The model card for a page that shows nothing else (None: the error is on the page)."""
    settings, api = _context()
    try:
        return settings, _card(api)
    except ApiError as exc:
        st.error(str(exc), icon="🚫")
        return settings, None
    finally:
        api.close()


def _filters(card: dict[str, Any], key: str) -> list[tuple[str, Any]]:
    """Labelled filter widgets for the columns the advisor picks; the API's query params."""
    options = card["filters"]
    columns = [*options["categories"], *options["numeric"]]
    chosen = st.multiselect(
        "Filter on",
        columns,
        key=f"{key}-columns",
        help="Choose the characteristics to filter on; a field for each appears below.",
    )
    params: list[tuple[str, Any]] = []
    for column in chosen:
        if column in options["categories"]:
            values = st.multiselect(
                f"{column}: any of", options["categories"][column], key=f"{key}-{column}"
            )
            params += [(f"eq:{column}", v) for v in values]
        else:
            low, high = st.columns(2)
            minimum = low.number_input(f"{column}: at least", value=None, key=f"{key}-{column}-min")
            maximum = high.number_input(f"{column}: at most", value=None, key=f"{key}-{column}-max")
            if minimum is not None:
                params.append((f"min:{column}", minimum))
            if maximum is not None:
                params.append((f"max:{column}", maximum))
    return params


def _search(api: ScoringApi, settings: DashboardSettings, card: dict[str, Any]) -> None:
    st.header("1. Find a client")
    prefix = st.text_input(
        "Client id (pseudonymised) starts with",
        key="search-prefix",
        max_chars=64,
        help="The first characters of the client's pseudonymised id; leave empty to list all.",
    )
    filters = _filters(card, "search")
    if prefix.strip():
        filters.append(("client_id_prefix", prefix.strip().lower()))
    if st.button("Search", type="primary"):
        st.session_state["query"] = filters
        st.session_state["offset"] = 0
    query = st.session_state.get("query")
    if query is None:
        st.info("Choose filters, then press Search: the dashboard never loads all clients.")
        return
    offset = int(st.session_state.get("offset", 0))
    columns = [*card["filters"]["categories"]][:1] + card["filters"]["numeric"][:3]
    result = api.search(query, settings.page_size, offset, columns)
    total, clients = result["total"], result["clients"]
    if not clients:
        st.warning("No client matches these filters.")
        return
    st.write(f"Clients {offset + 1} to {offset + len(clients)} of {total:,} matching the filters.")
    st.dataframe(clients, hide_index=True, width="stretch")
    previous, following = st.columns(2)
    if previous.button("Previous page", disabled=offset == 0):
        st.session_state["offset"] = max(0, offset - settings.page_size)
        st.rerun()
    if following.button("Next page", disabled=offset + len(clients) >= total):
        st.session_state["offset"] = offset + settings.page_size
        st.rerun()
    ids = [c["client_id"] for c in clients]
    chosen = st.selectbox("Client to open", ids, key="chosen-client")
    if st.button("Open client", type="primary"):
        st.session_state["client_id"] = chosen


def _client(api: ScoringApi, settings: DashboardSettings, card: dict[str, Any]) -> None:
    client_id = st.session_state.get("client_id")
    if not client_id:
        return
    st.header("2. Score and decision")
    explanation = api.explain(client_id)  # the API audits this access and stores the decision
    _describe(f"Client {client_id} (pseudonymised id)")
    warning = present.data_age_warning(
        explanation.get("observed_at"), datetime.now(UTC), settings.max_data_age_days
    )
    if warning:
        st.warning(warning, icon="⚠️")
    gauge, decision = st.columns([1, 1])
    with gauge:
        st.plotly_chart(present.gauge(explanation), key="gauge")
        _describe(present.gauge_text(explanation))
    with decision:
        st.subheader("Decision")
        st.markdown(f"**{present.decision_sentence(explanation)}**")
        st.write(
            f"Model {explanation['model_name']} version {explanation['model_version']}. The "
            "score ranks clients by risk; it is not a calibrated default rate."
        )
    st.header("3. Why: what moved this score")
    st.plotly_chart(present.contributions_chart(explanation), key="contributions")
    _describe(present.contributions_text(explanation))
    st.markdown(
        "\n".join(f"- {present.plain(s)}" for s in present.contribution_sentences(explanation))
    )
    row = _information(api, card, client_id)
    _comparison(api, settings, card, client_id, explanation, row)


def _information(api: ScoringApi, card: dict[str, Any], client_id: str) -> dict[str, Any]:
    """Shows the client's main characteristics; returns them (the comparison reuses them)."""
    st.header("4. The client's main information")
    shown = [c["column"] for c in card["data_used"] if c["filterable"]]
    row = api.client_row(client_id, shown[:MAX_LISTED]) or {}
    st.dataframe(
        [{"information": k, "value": present.value_text(v)} for k, v in row.items()],
        hide_index=True,
        width="stretch",
    )
    return row


def _comparison(
    api: ScoringApi,
    settings: DashboardSettings,
    card: dict[str, Any],
    client_id: str,
    explanation: dict[str, Any],
    known: dict[str, Any],
) -> None:
    st.header("5. Compared with other clients")
    options = card["filters"]
    numeric = present.ranked(card, options["numeric"])  # the most telling ones first
    categories = present.ranked(card, list(options["categories"]))
    group = st.radio("Compare with", ["All clients", "Similar clients (filters)"], horizontal=True)
    filters = _filters(card, "compare") if group.startswith("Similar") else []
    feature = st.selectbox(
        "Characteristic to compare", [*numeric, *categories], key="compare-feature"
    )
    left, right = st.columns(2)
    x = left.selectbox("Horizontal axis", numeric, index=0, key="compare-x")
    y = right.selectbox("Vertical axis", numeric, index=min(1, len(numeric) - 1), key="compare-y")
    features = list(dict.fromkeys([feature, x, y]))
    population = api.population(features, filters, settings.comparison_sample)
    if not population["rows"]:
        st.warning("No client matches these filters: widen them.")
        return
    st.write(
        f"A sample of {population['sample_size']:,} of the {population['total']:,} clients in "
        "the comparison group."
    )
    missing = [f for f in features if f not in known]  # only what section 4 did not fetch
    client = {**known, **(api.client_row(client_id, missing) or {})} if missing else known
    figure, text = present.distribution_chart(population["rows"], feature, client.get(feature))
    st.plotly_chart(figure, key="distribution")
    _describe(text)
    figure, text = present.scatter_chart(population["rows"], x, y, client, explanation["decision"])
    st.plotly_chart(figure, key="scatter")
    _describe(text)


def client_page() -> None:
    _title("Client score and explanation")
    settings, api = _context()
    try:
        card = _card(api)
        _search(api, settings, card)
        _client(api, settings, card)
    except ApiError as exc:
        st.error(str(exc), icon="🚫")
    finally:
        api.close()


def model_page() -> None:
    _title("Model card")
    _, card = _card_only()
    if card is None:
        return
    st.write(
        f"Model **{card['model_name']}**, version **{card['model_version']}** "
        f"({card['candidate']}), trained in MLflow run `{card['lineage'].get('mlflow_run_id')}`."
    )
    metrics, dummy, cost = card["test_metrics"], card["dummy_metrics"], card["cost"]
    st.header("How good it is (held-out test clients)")
    rows = [
        ("AUC (1 = perfect ranking, 0.5 = chance)", "auc", "{:.3f}"),
        ("Business cost per application", "business_cost_per_application", "{:.3f}"),
        ("Defaults caught (recall)", "recall", "{:.1%}"),
        ("Refused clients who would default (precision)", "precision", "{:.1%}"),
        ("Share of applications refused", "refusal_rate", "{:.1%}"),
    ]
    st.dataframe(
        [
            {
                "measure": label,
                "this model": fmt.format(metrics[key]) if key in metrics else "n/a",
                "baseline (no model)": fmt.format(dummy[key]) if key in dummy else "n/a",
            }
            for label, key, fmt in rows
        ],
        hide_index=True,
        width="stretch",
    )
    st.header("The decision threshold in money terms")
    fn, fp = cost.get("false_negative", "?"), cost.get("false_positive", "?")
    st.write(
        f"An application is refused when its risk score is at least "
        f"**{present.percent(card['threshold'])}**. A missed default costs the bank about "
        f"{fn} units, refusing a client who would have repaid about {fp}: the threshold is the "
        "one that made the total cost lowest on the validation clients. On the test clients it "
        f"costs {metrics.get('business_cost_per_application', float('nan')):.3f} units per "
        f"application, against {dummy.get('business_cost_per_application', float('nan')):.3f} "
        "without a model."
    )
    st.header("What the model looks at most")
    if card["global_importance"]:
        figure, text = present.importance_chart(card)
        st.plotly_chart(figure, key="importance")
        _describe(text)
    else:
        st.info("This model's run logged no global importance.")


def transparency_page() -> None:
    _title("Transparency: how client data are used")
    settings, card = _card_only()
    if card is None:
        return
    st.header("Purpose")
    st.write(
        "The score estimates the risk that a credit applicant will not repay, to help decide on "
        "the application (GDPR art. 6.1.b, steps prior to a contract). The decision is proposed "
        "by a model and explained here so that an advisor can review it and explain it to the "
        "client (GDPR art. 22)."
    )
    st.header("The data used")
    st.write(
        "Only these characteristics are kept from the application (data minimisation). Client "
        "identifiers are replaced by a keyed pseudonym before any processing. Characteristics "
        "marked as protected are reviewed for fairness and cannot be used to filter clients."
    )
    st.dataframe(
        [
            {
                "characteristic": c["column"],
                "description": c["description"] or "",
                "protected attribute": "yes" if c["sensitive"] else "no",
            }
            for c in card["data_used"]
        ],
        hide_index=True,
        width="stretch",
    )
    st.header("How long data are kept")
    st.markdown(
        f"- Each scored application (features, score, decision): "
        f"{settings.events_retention_days} days.\n"
        f"- The record of who looked at which client (access audit): "
        f"{settings.audit_retention_days} days.\n"
        "- The client records used for scoring: replaced at every data refresh."
    )
    st.header("The client's rights, and how to contest a decision")
    st.markdown(
        "- **Access and explanation**: the client may ask for the data used and for the main "
        "reasons of the decision (the 'Why' section of the client page).\n"
        "- **Rectification**: wrong or outdated data are corrected, then the client is scored "
        "again.\n"
        "- **Human review**: the client may contest an automated decision and obtain a review "
        f"by a person: write to {settings.contest_contact}.\n"
        "- **Objection and erasure** where the law allows it."
    )
    st.header("Who to contact")
    st.write(
        f"Data controller: {settings.controller}. Data protection officer: {settings.dpo_contact}."
    )
