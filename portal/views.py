"""Views shared by the public domain (SOC console) and tenant domains (customer portal)."""

from __future__ import annotations

from django.contrib.auth import logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST


def is_public_request(request: HttpRequest) -> bool:
    return connection.schema_name == "public"


class LoginView(auth_views.LoginView):
    """Login at the request's domain: operators at the public domain, a tenant's users at that tenant's domain.

    Users live in the schema of their domain, so credentials of one tenant cannot match at another's.
    """

    template_name = "portal/login.html"
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs: object) -> dict[str, object]:
        context = super().get_context_data(**kwargs)
        context["tenant"] = getattr(self.request, "tenant", None)
        context["is_public"] = is_public_request(self.request)
        return context


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    logout(request)
    return redirect("login")


@login_required
def home(request: HttpRequest) -> HttpResponse:
    if is_public_request(request):
        return render(request, "portal/soc_home.html", {"tenant": request.tenant})
    return render(request, "portal/customer_home.html", {"tenant": request.tenant})
