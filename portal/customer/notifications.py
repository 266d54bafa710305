"""Customer pages for notification channels: list, add, delete and "send a test", for the tenant's admins.

Channels live in the tenant's schema, which is the request's schema here, so another tenant's ids are simply not
found (404) at this domain.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from core.accounts.choices import UserRoleChoices
from core.permissions import request_actor
from portal.customer.forms import NotificationChannelForm
from portal.views import require_role, role_required
from tenants import notifications
from tenants.customer.models import NotificationChannel
from tenants.models import Tenant


def _tenant(request: HttpRequest) -> Tenant:
    tenant = getattr(request, "tenant", None)
    assert tenant is not None and not tenant.is_public, "customer views are only routed at a tenant's domain"
    return tenant


@role_required(UserRoleChoices.ADMIN)
@never_cache
def channels(request: HttpRequest) -> HttpResponse:
    """The tenant's channels and a form to add one."""
    tenant = _tenant(request)
    form = NotificationChannelForm(request.POST or None)
    created = None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            channel = notifications.add_notification_channel(
                tenant, kind=data["kind"], target=data["target"], events=data["events"],
                acting_user=request_actor(request),
            )
        except ValidationError as error:
            for field, problems in error.message_dict.items():
                form.add_error(field if field in form.fields else None, problems)
        else:
            if not channel.secret:
                messages.success(request, "Notification channel added.")
                return redirect("customer:notifications")
            # The signing secret is shown on this answer only (never stored in a message or the session).
            created = channel
            form = NotificationChannelForm()
    context = {"tenant": tenant, "channels": NotificationChannel.objects.all(), "form": form, "created": created}
    return render(request, "customer/notifications.html", context)


def _channel(request: HttpRequest, pk: int) -> NotificationChannel:
    """Look up first (404 alike for every role), then require an admin."""
    channel = get_object_or_404(NotificationChannel, pk=pk)
    require_role(request, UserRoleChoices.ADMIN)
    return channel


@require_POST
@role_required(UserRoleChoices.VIEWER)
def channel_delete(request: HttpRequest, pk: int) -> HttpResponse:
    channel = _channel(request, pk)
    notifications.delete_notification_channel(_tenant(request), channel, acting_user=request_actor(request))
    messages.success(request, f"Removed {channel}.")
    return redirect("customer:notifications")


@require_POST
@role_required(UserRoleChoices.VIEWER)
def channel_test(request: HttpRequest, pk: int) -> HttpResponse:
    """Send a test message now, so the admin sees at once whether the address or URL works (or why not, as a
    category: the raw error could tell what lies behind a refused address)."""
    channel = _channel(request, pk)
    error = notifications.send_test(channel, _tenant(request))
    if error is None:
        messages.success(request, f"Test sent to {channel}.")
    else:
        messages.error(request, f"Test to {channel} failed: {error}")
    return redirect("customer:notifications")
