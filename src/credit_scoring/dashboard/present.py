"""What the dashboard says and draws, as pure functions: sentences, text alternatives of the
charts, the palette (contrast and colour-blind safety are tested), the data-age warning."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import plotly.graph_objects as go

# Okabe-Ito colours (designed to stay distinct for the common colour-vision deficiencies):
# vermillion for "raises the risk", bluish green for "lowers it". Text is never drawn in
# them: text is dark on white (contrast >= 4.5:1); the colours fill bars and markers (>= 3:1
# against white), and an icon or a marker shape always says the same thing.
RAISES = "#D55E00"
LOWERS = "#009E73"
TEXT = "#1F2328"
BACKGROUND = "#FFFFFF"
NEUTRAL = "#5A6270"
CLIENT = "#000000"
ICON_RAISES, ICON_LOWERS = "▲", "▼"
ICON_REFUSE, ICON_ACCEPT = "✖", "✔"
DECISION_COLOURS = {"refuse": RAISES, "accept": LOWERS}
DECISION_SYMBOLS = {"refuse": "x", "accept": "circle"}


def _linear(channel: float) -> float:
    c = channel / 255
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def rgb(colour: str) -> tuple[int, int, int]:
    value = colour.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def luminance(colour: str) -> float:
    r, g, b = (_linear(c) for c in rgb(colour))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    """WCAG 2.1 contrast ratio of two colours."""
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


_MARKDOWN = re.compile(r"([\\`*_\[\]<>#|~$])")


def plain(text: str) -> str:
    """``text`` shown literally by Markdown (feature names hold underscores)."""
    return _MARKDOWN.sub(r"\\\1", text)


def percent(probability: float) -> str:
    return f"{100 * probability:.1f}%"


def decision_sentence(explanation: dict[str, Any]) -> str:
    p, t = explanation["probability"], explanation["threshold"]
    if explanation["decision"] == "refuse":
        return (
            f"{ICON_REFUSE} Refuse: the risk score is {percent(p)}, at or above the decision "
            f"threshold of {percent(t)}."
        )
    return (
        f"{ICON_ACCEPT} Accept: the risk score is {percent(p)}, below the decision threshold "
        f"of {percent(t)}."
    )


def value_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return "missing" if value is None else str(value)


def contribution_sentences(explanation: dict[str, Any], top: int = 5) -> list[str]:
    """The largest contributions, each a sentence with an icon (never colour alone)."""
    sentences = []
    for c in explanation["contributions"][:top]:
        if c["shap_value"] >= 0:
            sentences.append(
                f"{ICON_RAISES} {c['feature']} = {value_text(c['value'])} raises the risk "
                f"(+{c['shap_value']:.3f})."
            )
        else:
            sentences.append(
                f"{ICON_LOWERS} {c['feature']} = {value_text(c['value'])} lowers the risk "
                f"({c['shap_value']:.3f})."
            )
    return sentences


def data_age_warning(observed_at: str | None, now: datetime, max_days: int) -> str | None:
    """A warning when the client's data are older than ``max_days`` (or of unknown age)."""
    if not observed_at:
        return (
            "When this client's data were collected is unknown: check them with the client "
            "before relying on this score."
        )
    observed = datetime.fromisoformat(observed_at).replace(tzinfo=None)
    age = (now.replace(tzinfo=None) - observed).days
    if age <= max_days:
        return None
    return (
        f"This client's data were collected on {observed:%d %B %Y}, {age} days ago (more than "
        f"{max_days} days). Check them with the client before relying on this score: a "
        "decision must rest on accurate data (GDPR art. 5.1.d)."
    )


def gauge(explanation: dict[str, Any]) -> go.Figure:
    """The risk score on a 0-100% dial, the threshold marked, the decision in the title."""
    p, t = 100 * explanation["probability"], 100 * explanation["threshold"]
    colour = DECISION_COLOURS[explanation["decision"]]
    figure = go.Figure(
        go.Indicator(
            mode="gauge+number",
            value=p,
            number={"suffix": "%", "valueformat": ".1f", "font": {"color": TEXT}},
            title={"text": "Risk score (probability of default)", "font": {"color": TEXT}},
            gauge={
                "axis": {"range": [0, 100], "ticksuffix": "%", "tickcolor": TEXT},
                "bar": {"color": colour},
                "steps": [
                    {"range": [0, t], "color": "#E8F4EF"},
                    {"range": [t, 100], "color": "#FBE9E1"},
                ],
                "threshold": {"line": {"color": TEXT, "width": 4}, "value": t},
            },
        )
    )
    figure.update_layout(height=260, margin={"t": 60, "b": 10, "l": 30, "r": 30})
    return _accessible(figure)


def gauge_text(explanation: dict[str, Any]) -> str:
    return (
        f"Gauge: the risk score is {percent(explanation['probability'])} on a scale from 0 to "
        f"100%; the decision threshold, marked by a black line, is "
        f"{percent(explanation['threshold'])}. Decision: {explanation['decision']}."
    )


def contributions_chart(explanation: dict[str, Any], top: int = 10) -> go.Figure:
    items = list(reversed(explanation["contributions"][:top]))
    labels = [
        f"{ICON_RAISES if c['shap_value'] >= 0 else ICON_LOWERS} {c['feature']}" for c in items
    ]
    figure = go.Figure(
        go.Bar(
            x=[c["shap_value"] for c in items],
            y=labels,
            orientation="h",
            marker={
                "color": [RAISES if c["shap_value"] >= 0 else LOWERS for c in items],
                "pattern": {"shape": ["" if c["shap_value"] >= 0 else "/" for c in items]},
            },
            hovertemplate="%{y}: %{x:.3f}<extra></extra>",
        )
    )
    figure.update_layout(
        title=f"What moved the score ({ICON_RAISES} raises the risk, {ICON_LOWERS} lowers it)",
        xaxis_title=f"contribution to the score ({explanation['units'].replace('_', ' ')})",
        height=40 * len(items) + 120,
        margin={"l": 10, "r": 10, "t": 50, "b": 40},
    )
    return _accessible(figure)


def contributions_text(explanation: dict[str, Any], top: int = 10) -> str:
    items = explanation["contributions"][:top]
    up = [c["feature"] for c in items if c["shap_value"] >= 0]
    down = [c["feature"] for c in items if c["shap_value"] < 0]
    return (
        f"Bar chart of the {len(items)} largest contributions to this client's score. Raising "
        f"the risk: {', '.join(up) or 'none'}. Lowering it: {', '.join(down) or 'none'}."
    )


def _numbers(values: Sequence[Any]) -> list[float]:
    return [float(v) for v in values if isinstance(v, int | float) and v == v]


def distribution_chart(
    rows: list[dict[str, Any]], feature: str, client_value: Any
) -> tuple[go.Figure, str]:
    """The group's distribution of one feature with the client marked, and its text."""
    values = [r[feature] for r in rows]
    numbers = _numbers(values)
    figure = go.Figure()
    if numbers and len(numbers) >= len([v for v in values if v is not None]):
        figure.add_trace(go.Histogram(x=numbers, marker={"color": NEUTRAL}, name="clients"))
        if isinstance(client_value, int | float):
            figure.add_vline(x=client_value, line={"color": CLIENT, "width": 3, "dash": "dash"})
            figure.add_annotation(
                x=client_value,
                y=1,
                yref="paper",
                text="This client",
                showarrow=False,
                font={"color": TEXT},
                bgcolor=BACKGROUND,
            )
            below = sum(1 for v in numbers if v < client_value)
            text = (
                f"Histogram of {feature} for {len(numbers)} clients of the comparison group. "
                f"This client's value, {value_text(client_value)}, is higher than "
                f"{100 * below / len(numbers):.0f}% of them."
            )
        else:
            text = (
                f"Histogram of {feature} for {len(numbers)} clients of the comparison group; "
                "this client's value is missing."
            )
    else:
        counts: dict[str, int] = {}
        for v in values:
            counts[value_text(v)] = counts.get(value_text(v), 0) + 1
        names = sorted(counts, key=lambda k: -counts[k])
        mine = value_text(client_value)
        figure.add_trace(
            go.Bar(
                x=names,
                y=[counts[n] for n in names],
                marker={
                    "color": [CLIENT if n == mine else NEUTRAL for n in names],
                    "pattern": {"shape": ["x" if n == mine else "" for n in names]},
                },
            )
        )
        share = 100 * counts.get(mine, 0) / max(len(values), 1)
        text = (
            f"Bar chart of {feature} for {len(values)} clients of the comparison group. This "
            f"client's category, {mine} (hatched bar), is shared by {share:.0f}% of them."
        )
    figure.update_layout(
        title=f"{feature}: this client among the comparison group",
        xaxis_title=feature,
        yaxis_title="clients",
        showlegend=False,
        height=320,
    )
    return _accessible(figure), text


def scatter_chart(
    rows: list[dict[str, Any]], x: str, y: str, client: dict[str, Any], decision: str
) -> tuple[go.Figure, str]:
    """Two features of the group, coloured and shaped by decision, the client as a star."""
    figure = go.Figure()
    counts = {}
    for outcome in ("accept", "refuse"):
        group = [r for r in rows if r["decision"] == outcome]
        counts[outcome] = len(group)
        figure.add_trace(
            go.Scatter(
                x=[r[x] for r in group],
                y=[r[y] for r in group],
                mode="markers",
                name=f"{ICON_ACCEPT if outcome == 'accept' else ICON_REFUSE} {outcome}",
                marker={
                    "color": DECISION_COLOURS[outcome],
                    "symbol": DECISION_SYMBOLS[outcome],
                    "size": 7,
                    "opacity": 0.7,
                },
            )
        )
    figure.add_trace(
        go.Scatter(
            x=[client.get(x)],
            y=[client.get(y)],
            mode="markers+text",
            name="★ this client",
            text=["this client"],
            textposition="top center",
            textfont={"color": TEXT},
            marker={"color": CLIENT, "symbol": "star", "size": 18, "line": {"width": 2}},
        )
    )
    figure.update_layout(
        title=f"{y} against {x}, by decision",
        xaxis_title=x,
        yaxis_title=y,
        height=380,
        legend={"title": {"text": "decision"}},
    )
    text = (
        f"Scatter plot of {y} against {x} for {len(rows)} clients of the comparison group: "
        f"{counts['accept']} accepted (green circles) and {counts['refuse']} refused (orange "
        f"crosses). This client (black star, {decision}) is at {x} = {value_text(client.get(x))}, "
        f"{y} = {value_text(client.get(y))}."
    )
    return _accessible(figure), text


def importance_chart(card: dict[str, Any], top: int = 15) -> tuple[go.Figure, str]:
    items = list(reversed(card["global_importance"][:top]))
    figure = go.Figure(
        go.Bar(
            x=[i["importance"] for i in items],
            y=[i["feature"] for i in items],
            orientation="h",
            marker={"color": NEUTRAL},
        )
    )
    figure.update_layout(
        title="Global feature importance",
        xaxis_title=card.get("importance_method") or "importance",
        height=28 * len(items) + 120,
        margin={"l": 10, "r": 10, "t": 50, "b": 40},
    )
    ranked = [i["feature"] for i in card["global_importance"][:5]]
    text = (
        f"Bar chart of the {len(items)} most important features for the model overall. "
        f"The five most important: {', '.join(ranked)}."
    )
    return _accessible(figure), text


def _accessible(figure: go.Figure) -> go.Figure:
    """Dark text on white, a font size that scales with the page."""
    figure.update_layout(
        paper_bgcolor=BACKGROUND,
        plot_bgcolor=BACKGROUND,
        font={"color": TEXT, "size": 14},
    )
    figure.update_xaxes(tickfont_color=TEXT, title_font_color=TEXT)
    figure.update_yaxes(tickfont_color=TEXT, title_font_color=TEXT)
    return figure


def ranked(card: dict[str, Any], columns: list[str]) -> list[str]:
    """``columns`` with the model's most important first (the comparison's defaults)."""
    order = {item["feature"]: i for i, item in enumerate(card.get("global_importance", []))}
    return sorted(columns, key=lambda c: order.get(c, len(order)))
