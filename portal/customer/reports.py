"""The per-attack PDF report a customer hands to management or an insurer, next to the CSV export.

It tells the story from the records Sluice already keeps (mitigation.story): the signals, each decision and why,
every state change from the audit, the verdicts, the actions on the network, the attack's size and vectors, how
long it took to mitigate, and whether it works (the latest verdict).
All rows are read through the tenant-scoped selectors, so another tenant's id is a 404 like a missing one.
"""

from __future__ import annotations

import datetime
import io
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from core.accounts.models import User
from mitigation import customer_view, selectors, story
from mitigation.models import Attack, Mitigation
from portal.views import viewer_required
from tenants.models import Tenant


def _when(moment: datetime.datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "—"


def _rate(value: int, unit: str) -> str:
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:.1f} {prefix}{unit}"
    return f"{value} {unit}"


def verdict_line(mitigation: Mitigation) -> str:
    """The latest verdict as one sentence with its time, or that there is none yet."""
    if not mitigation.verdict:
        return "Not judged yet: a verdict needs traffic figures from the network after the mitigation is active."
    return f"{mitigation.get_verdict_display()} at {_when(mitigation.verdict_at)}: {mitigation.verdict_summary}"


def time_to_mitigate(attack: Attack, mitigation: Mitigation) -> datetime.timedelta | None:
    """From the first signal to the mitigation being active on the network (None if it never was)."""
    return mitigation.activated_at - attack.started_at if mitigation.activated_at else None


@dataclass(frozen=True)
class CustomerEntry:
    """A moment of the mitigation's story in the customer's words (mitigation.customer_view): no element names,
    device messages or provider staff names."""

    at: datetime.datetime
    kind: str
    title: str
    detail: str


_CARRIED = {"present": "carried on the provider's network", "absent": "removed from the provider's network",
            "failed": customer_view.PENDING}


def _shown_reason(entry: story.TimelineEntry) -> str:
    if entry.action == "mitigation.failed" or entry.detail.startswith("degraded:"):
        return customer_view.error(entry.detail)
    return customer_view.reason(entry.detail)


def customer_timeline(tenant: Tenant, mitigation: Mitigation) -> list[CustomerEntry]:
    """The story of `mitigation.story.timeline`, oldest first, as the tenant may read it. Deployments name no
    element: those of one kind and state within a minute are one entry that counts the elements."""
    own_users = set(User.objects.values_list("username", flat=True))  # the request is in the tenant's schema
    shown: list[CustomerEntry] = []
    merged = 1
    for entry in story.timeline(mitigation):
        if entry.kind == "deployment":
            state = entry.title.rsplit(" ", 1)[-1]
            item = CustomerEntry(entry.at, "deployment", entry.title, _CARRIED.get(state, state))
            last = shown[-1] if shown else None
            if (last is not None and last.kind == "deployment" and last.title == item.title
                    and (item.at - last.at).total_seconds() <= 60):
                merged += 1
                shown[-1] = CustomerEntry(last.at, last.kind, last.title,
                                          f"{_CARRIED.get(state, state)} ({merged} elements)")
                continue
            merged = 1
            shown.append(item)
            continue
        merged = 1
        if entry.kind == "decision":
            shown.append(CustomerEntry(entry.at, entry.kind, entry.title, customer_view.reason(entry.detail)))
        elif entry.actor:
            who = customer_view.actor(_actor_text(entry.actor, own_users, tenant.slug), tenant.slug)
            shown.append(CustomerEntry(entry.at, entry.kind, entry.title,
                                       f"{who}: {_shown_reason(entry)}".rstrip(": ")))
        else:
            shown.append(CustomerEntry(entry.at, entry.kind, entry.title, entry.detail))
    return shown


def _actor_text(actor: str, own_users: set[str], tenant_slug: str) -> str:
    """The audit's `kind:name` as Actor prints it (`kind:name@tenant` for the tenant's own users), for
    customer_view.actor. A row keeps the object's tenant, not the actor's, so the tenant's own users are told
    apart from the provider's by name."""
    kind, _, name = actor.partition(":")
    if kind == "engine":
        return "engine"
    return f"{actor}@{tenant_slug}" if kind == "user" and name in own_users else actor


def _table(data: list[list[Any]], widths: list[float]) -> Table:
    table = Table(data, colWidths=widths, repeatRows=1)
    table.setStyle(TableStyle([
        ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 8), ("FONT", (0, 1), (-1, -1), "Helvetica", 8),
        ("VALIGN", (0, 0), (-1, -1), "TOP"), ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.grey),
        ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, colors.HexColor("#f2f4f7")]),
    ]))
    return table


def mitigation_pdf(tenant: Tenant, mitigation: Mitigation) -> bytes:
    """Render the report; pure (no I/O besides the database reads), so it can be called from a task later."""
    styles = getSampleStyleSheet()
    small = styles["BodyText"].clone("small", fontSize=8, leading=10)
    attack = mitigation.attack
    elapsed = time_to_mitigate(attack, mitigation)
    summary = [
        ["Target", str(attack.target)], ["Vectors", ", ".join(attack.vectors) or "—"],
        ["Peak", f"{_rate(attack.peak_bps, 'bit/s')}, {_rate(attack.peak_pps, 'pkt/s')}"],
        ["Started", _when(attack.started_at)], ["Ended", _when(attack.ended_at or mitigation.ended_at)],
        ["Mitigation", f"{mitigation.level} ({mitigation.state})"],
        ["Active since", _when(mitigation.activated_at)],
        ["Time to mitigate", str(elapsed).split(".")[0] if elapsed is not None else "not mitigated"],
        ["Verdict", mitigation.get_verdict_display() or "not judged yet"],
    ]
    story: list[Any] = [
        Paragraph(escape(f"{tenant.name}: attack report, mitigation {mitigation.pk}"), styles["Title"]),
        _table([["", ""], *summary], [40 * mm, 130 * mm]),
        Spacer(1, 6 * mm), Paragraph("Why", styles["Heading2"]),
        Paragraph(escape(customer_view.reason(mitigation.reason) or "—"), small),
        Spacer(1, 4 * mm), Paragraph("Does it work", styles["Heading2"]),
        Paragraph(escape(verdict_line(mitigation)), small),
        Spacer(1, 4 * mm), Paragraph("Timeline", styles["Heading2"]),
        _table([["Time", "What", "Detail"]] + [[_when(e.at), Paragraph(escape(e.title), small),
                                                Paragraph(escape(e.detail), small)]
                                               for e in customer_timeline(tenant, mitigation)],
               [38 * mm, 32 * mm, 100 * mm]),
        Spacer(1, 4 * mm), Paragraph("Actions on the network", styles["Heading2"]),
    ]
    actions = selectors.actions_for(tenant).filter(mitigation=mitigation)
    story.append(_table(
        [["Created", "Kind", "Status", "Reason"]]
        + [[_when(action.created_at), action.kind, action.status,
            Paragraph(escape(customer_view.reason(action.reason)), small)]
           for action in actions],
        [38 * mm, 22 * mm, 20 * mm, 90 * mm],
    ))
    buffer = io.BytesIO()
    SimpleDocTemplate(buffer, pagesize=A4, title=f"Sluice mitigation {mitigation.pk}", author="Sluice",
                      leftMargin=18 * mm, rightMargin=18 * mm).build(story)
    return buffer.getvalue()


@viewer_required
def mitigation_report_pdf(request: HttpRequest, pk: int) -> HttpResponse:
    """GET /mitigations/<id>/report.pdf: the report of one of the tenant's own mitigations."""
    tenant = getattr(request, "tenant", None)
    assert tenant is not None and not tenant.is_public, "customer views are only routed at a tenant's domain"
    mitigation = get_object_or_404(selectors.mitigations_for(tenant).select_related("attack"), pk=pk)
    response = HttpResponse(mitigation_pdf(tenant, mitigation), content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="sluice-{tenant.slug}-mitigation-{mitigation.pk}.pdf"'
    return response
