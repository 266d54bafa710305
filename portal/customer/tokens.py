"""API tokens of a tenant, managed by its admins: the key is shown once, then only its prefix."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from core.accounts.choices import UserRoleChoices
from core.accounts.models import ApiToken, User
from core.accounts.services import create_api_token, revoke_api_token
from core.errors import ValidationProblem
from core.permissions import request_actor
from portal.customer.forms import ApiTokenForm
from portal.views import add_problem, role_required

admin_required = role_required(UserRoleChoices.ADMIN)


@admin_required
@never_cache
def tokens(request: HttpRequest) -> HttpResponse:
    """List the tenant's tokens and make a new one. Every query runs in the tenant's own schema."""
    users = list(User.objects.filter(is_active=True).order_by("username").values_list("username", flat=True))
    form = ApiTokenForm(request.POST or None, users=users)
    created: tuple[ApiToken, str] | None = None
    if request.method == "POST" and form.is_valid():
        try:
            created = create_api_token(
                User.objects.get(username=form.cleaned_data["user"]), name=form.cleaned_data["name"],
                scopes=form.cleaned_data["scopes"], expires_in_days=form.cleaned_data["expires_in_days"],
                acting_user=request_actor(request),
            )
        except ValidationProblem as problem:
            add_problem(form, problem)
        else:
            form = ApiTokenForm(users=users)
    rows = ApiToken.objects.select_related("user").order_by("-created_at")
    return render(request, "customer/tokens.html", {"form": form, "tokens": rows, "created": created})


@require_POST
@admin_required
def token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=pk)
    revoke_api_token(token, acting_user=request_actor(request))
    messages.success(request, f"Token {token.name} revoked.")
    return redirect("customer:tokens")
