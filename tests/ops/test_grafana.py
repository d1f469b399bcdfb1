"""The Grafana dashboards: exported JSON = what the code generates, every panel documented,
every query valid PromQL (checked offline by promtool; evaluated live in the integration
test)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from credit_scoring.ops.grafana import DASHBOARDS, OUTPUT, export, expressions, render
from tests.conftest import require_binary


def test_exported_json_is_what_the_code_generates() -> None:
    for name, build in DASHBOARDS.items():
        assert (OUTPUT / name).read_text() == render(build()), (
            f"{name} was edited by hand or not regenerated: run `make dashboards`"
        )
    assert export(check=True) == 0


def test_a_hand_edit_is_caught(tmp_path: Path) -> None:
    assert export(output=tmp_path) == 0
    path = tmp_path / next(iter(DASHBOARDS))
    path.write_text(path.read_text().replace("Requests per second", "Requests"))
    assert export(check=True, output=tmp_path) == 1


def test_every_panel_has_a_title_unit_description_and_queries() -> None:
    panels = 0
    for name in DASHBOARDS:
        dashboard = json.loads((OUTPUT / name).read_text())
        assert dashboard["uid"] and dashboard["title"]
        for panel in dashboard["panels"]:
            if panel["type"] == "row":
                continue
            panels += 1
            assert panel["title"] and len(panel["description"]) > 20, panel["title"]
            assert panel["fieldConfig"]["defaults"]["unit"], panel["title"]
            assert panel["targets"], panel["title"]
            assert all(t["datasource"]["uid"] == "prometheus" for t in panel["targets"])
    assert panels >= 18


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    rules = [
        {"record": f"dashboard:query_{i}", "expr": expr}
        for i, (_, expr) in enumerate(
            e for name in DASHBOARDS for e in expressions(json.loads((OUTPUT / name).read_text()))
        )
    ]
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout
