"""The per-attack PDF report a customer hands to management or an insurer, next to the CSV export.

It tells the story from the records Sluice already keeps: the signals, each decision and why, every state change
from the audit, the actions on the network, the attack's size and vectors, and how long it took to mitigate.
All rows are read through the tenant-scoped selectors, so another tenant's id is a 404 like a missing one.
"""

from __future__ import annotations

import datetime
import io
from typing import Any
from xml.sax.saxutils import escape

from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from core.accounts.models import User
from core.models import AuditEvent
from mitigation import customer_view, selectors
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


def time_to_mitigate(attack: Attack, mitigation: Mitigation) -> datetime.timedelta | None:
    """From the first signal to the mitigation being active on the network (None if it never was)."""
    return mitigation.activated_at - attack.started_at if mitigation.activated_at else None


def timeline(tenant: Tenant, mitigation: Mitigation) -> list[tuple[datetime.datetime, str, str]]:
    """Signals, decisions and audited state changes of one mitigation, oldest first."""
    attack = mitigation.attack
    rows: list[tuple[datetime.datetime, str, str]] = [
        (signal.received_at, "signal",
         f"{signal.phase} from {signal.detector}: {', '.join(signal.vectors)}, {_rate(signal.bps, 'bit/s')}")
        for signal in attack.signals.all()
    ]
    rows += [
        (decision.created_at, "decision", f"{decision.level}: {customer_view.reason(decision.reason)}")
        for decision in selectors.decisions_for(tenant).filter(mitigation=mitigation)
    ]
    audit = AuditEvent.objects.filter(
        Q(object_type=Mitigation._meta.label, object_id=str(mitigation.pk))
        | Q(object_type=Attack._meta.label, object_id=str(attack.pk))
    )
    own_users = set(User.objects.values_list("username", flat=True))  # the request is in the tenant's schema
    rows += [(event.created_at, event.action,
              f"{customer_view.actor(_actor_text(event, own_users), tenant.slug)}: {event.reason}".rstrip(": "))
             for event in audit]
    return sorted(rows, key=lambda row: row[0])


def _actor_text(event: AuditEvent, own_users: set[str]) -> str:
    """The audit row's actor as Actor prints it (`kind:name@tenant` for the tenant's own users), for
    customer_view.actor. A row keeps the object's tenant, not the actor's, so the tenant's own users are told
    apart from the provider's by name."""
    where = f"@{event.tenant_slug}" if event.actor_kind == "user" and event.actor in own_users else ""
    return f"{event.actor_kind}:{event.actor}{where}"


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
    ]
    story: list[Any] = [
        Paragraph(escape(f"{tenant.name}: attack report, mitigation {mitigation.pk}"), styles["Title"]),
        _table([["", ""], *summary], [40 * mm, 130 * mm]),
        Spacer(1, 6 * mm), Paragraph("Why", styles["Heading2"]),
        Paragraph(escape(customer_view.reason(mitigation.reason) or "—"), small),
        Spacer(1, 4 * mm), Paragraph("Timeline", styles["Heading2"]),
        _table([["Time", "What", "Detail"]] + [[_when(at), what, Paragraph(escape(detail), small)]
                                             for at, what, detail in timeline(tenant, mitigation)],
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
