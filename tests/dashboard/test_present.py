"""What the dashboard says and draws: contrast, colour-blind safety, sentences, warnings."""

from __future__ import annotations

import tomllib
from datetime import datetime
from itertools import combinations

import pytest

from credit_scoring.config.loader import PROJECT_ROOT
from credit_scoring.dashboard import present

# Colour-vision deficiency simulation (Machado, Oliveira & Fernandes 2009, severity 1.0),
# applied in linear RGB.
CVD = {
    "protanopia": ((0.152286, 1.052583, -0.204868), (0.114503, 0.786281, 0.099216),
                   (-0.003882, -0.048116, 1.051998)),
    "deuteranopia": ((0.367322, 0.860646, -0.227968), (0.280085, 0.672501, 0.047413),
                     (-0.011820, 0.042940, 0.968881)),
    "tritanopia": ((1.255528, -0.076749, -0.178779), (-0.078411, 0.930809, 0.147602),
                   (0.004733, 0.691367, 0.303900)),
}  # fmt: skip


def _simulate(colour: str, matrix) -> tuple[float, float, float]:
    linear = [present._linear(c) for c in present.rgb(colour)]
    return tuple(
        min(max(sum(m * c for m, c in zip(row, linear, strict=True)), 0), 1) for row in matrix
    )


def _lab(linear_rgb) -> tuple[float, float, float]:
    r, g, b = linear_rgb
    x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116

    return 116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))


def _distance(a, b) -> float:
    return sum((p - q) ** 2 for p, q in zip(_lab(a), _lab(b), strict=True)) ** 0.5


def test_text_contrast_is_at_least_4_5_to_1():
    assert present.contrast(present.TEXT, present.BACKGROUND) >= 4.5
    theme = tomllib.loads((PROJECT_ROOT / ".streamlit/config.toml").read_text())["theme"]
    assert present.contrast(theme["textColor"], theme["backgroundColor"]) >= 4.5
    assert present.contrast(theme["textColor"], theme["secondaryBackgroundColor"]) >= 4.5
    # buttons: white text on the primary colour
    assert present.contrast("#FFFFFF", theme["primaryColor"]) >= 4.5


def test_the_meaningful_colours_stand_out_from_white_and_each_other_for_everyone():
    colours = [present.RAISES, present.LOWERS, present.NEUTRAL, present.CLIENT]
    for colour in colours:
        assert present.contrast(colour, present.BACKGROUND) >= 3.0, colour  # WCAG 1.4.11
    for name, matrix in {"normal": ((1, 0, 0), (0, 1, 0), (0, 0, 1)), **CVD}.items():
        for a, b in combinations(colours, 2):
            delta = _distance(_simulate(a, matrix), _simulate(b, matrix))
            assert delta >= 20, (name, a, b, round(delta, 1))
    # a check that can fail: the classic pure red and green collapse for deuteranopes
    red, green = (
        _simulate("#FF0000", CVD["deuteranopia"]),
        _simulate("#00B000", CVD["deuteranopia"]),
    )
    assert _distance(red, green) < 20


EXPLANATION = {
    "probability": 0.62,
    "threshold": 0.4,
    "decision": "refuse",
    "units": "log_odds",
    "contributions": [
        {"feature": "EXT_SOURCE_3", "value": 0.12, "shap_value": 0.8},
        {"feature": "AMT_INCOME_TOTAL", "value": 250000.0, "shap_value": -0.3},
        {"feature": "NAME_CONTRACT_TYPE", "value": "Cash loans", "shap_value": 0.1},
    ],
}


def test_the_decision_and_the_reasons_are_words_with_icons_not_colours_alone():
    assert present.decision_sentence(EXPLANATION).startswith("✖ Refuse: the risk score is 62.0%")
    accepted = {**EXPLANATION, "probability": 0.1, "decision": "accept"}
    assert present.decision_sentence(accepted).startswith("✔ Accept")
    sentences = present.contribution_sentences(EXPLANATION)
    assert sentences[0] == "▲ EXT_SOURCE_3 = 0.12 raises the risk (+0.800)."
    assert sentences[1] == "▼ AMT_INCOME_TOTAL = 250,000 lowers the risk (-0.300)."
    figure = present.contributions_chart(EXPLANATION)
    bar = figure.data[0]
    assert list(bar.y) == ["▲ NAME_CONTRACT_TYPE", "▼ AMT_INCOME_TOTAL", "▲ EXT_SOURCE_3"]
    assert list(bar.marker.pattern.shape) == ["", "/", ""]  # a pattern as well as a colour
    assert "Raising the risk: EXT_SOURCE_3, NAME_CONTRACT_TYPE" in present.contributions_text(
        EXPLANATION
    )


def test_every_chart_has_a_sentence_saying_what_it_shows():
    rows = [
        {"AMT_CREDIT": float(c), "AMT_ANNUITY": c / 20, "decision": d, "NAME_CONTRACT_TYPE": k}
        for c, d, k in [(100, "accept", "Cash loans"), (200, "refuse", "Cash loans"),
                        (300, "accept", "Revolving loans"), (400, "accept", "Cash loans")]
    ]  # fmt: skip
    _, text = present.distribution_chart(rows, "AMT_CREDIT", 250.0)
    assert "higher than 50% of them" in text and "4 clients" in text
    _, text = present.distribution_chart(rows, "NAME_CONTRACT_TYPE", "Cash loans")
    assert "Cash loans (hatched bar), is shared by 75%" in text
    figure, text = present.scatter_chart(rows, "AMT_CREDIT", "AMT_ANNUITY", rows[1], "refuse")
    assert "3 accepted (green circles) and 1 refused (orange crosses)" in text
    symbols = {t.name: t.marker.symbol for t in figure.data}
    assert symbols == {"✔ accept": "circle", "✖ refuse": "x", "★ this client": "star"}
    assert "threshold, marked by a black line, is 40.0%" in present.gauge_text(EXPLANATION)


@pytest.mark.parametrize(
    ("observed", "warned"),
    [("2026-10-01T00:00:00", False), ("2026-01-01T00:00:00", True), (None, True)],
)
def test_old_client_data_get_a_warning(observed, warned):
    warning = present.data_age_warning(observed, datetime(2026, 11, 23, 12), 183)
    assert (warning is not None) == warned
    if observed == "2026-01-01T00:00:00":
        assert "326 days ago" in warning and "GDPR art. 5.1.d" in warning
