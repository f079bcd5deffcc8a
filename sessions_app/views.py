"""Pages. Every page needs a signed-in user (LoginRequiredMiddleware) except login/sign-up/health."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.forms import UserCreationForm
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from . import selectors, services
from .models import ApiToken

DASHBOARD_PAGE_SIZE = 50


@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    # `pk` breaks ties in the newest-first order, so no row shows on two pages or on none.
    conversations = selectors.conversation_list(user=request.user).order_by("-updated_at", "-pk")
    # get_page: a missing or non-numeric page is the first, one past the end is the last.
    page = Paginator(conversations, DASHBOARD_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "sessions_app/dashboard.html", {"conversations": page.object_list, "page": page})


@require_POST
def conversation_new(request: HttpRequest) -> HttpResponse:
    profiles = selectors.profiles_usable_by(user=request.user)
    chosen = request.POST.get("profile")
    profile = next((p for p in profiles if str(p.pk) == chosen), None) or (profiles[0] if profiles else None)
    if profile is None:
        messages.error(request, "No upstream profile is available to you. Ask an administrator to add one.")
        return redirect("dashboard")
    conversation = services.conversation_create(
        owner=request.user, title=request.POST.get("title", "").strip(), profile=profile
    )
    return redirect("conversation_detail", pk=conversation.pk)


@require_GET
def conversation_detail(request: HttpRequest, pk) -> HttpResponse:
    conversation = selectors.conversation_get(user=request.user, pk=pk)
    return render(
        request,
        "sessions_app/conversation.html",
        {
            "conversation": conversation,
            "responses": selectors.conversation_responses(conversation=conversation),
            "read_only": conversation.owner_id != request.user.pk,
        },
    )


@require_http_methods(["GET", "POST"])
def token_list(request: HttpRequest) -> HttpResponse:
    new_token = None
    if request.method == "POST":
        _, new_token = ApiToken.issue(user=request.user, name=request.POST.get("name", "").strip()[:100])
    response = render(
        request,
        "sessions_app/tokens.html",
        {"tokens": selectors.token_list(user=request.user), "new_token": new_token},
    )
    response["Cache-Control"] = "no-store"  # the page may hold a token shown only once
    return response


@require_POST
def token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=pk, user=request.user)
    token.revoke()
    messages.success(request, f"Token {token.prefix}… revoked.")
    return redirect("token_list")


@login_not_required
@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if not settings.SWITCHBOARD_SIGNUP_ENABLED:
        raise Http404("Sign-up is disabled")
    form = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")  # axes' backend only guards
        return redirect("dashboard")
    return render(request, "registration/signup.html", {"form": form})


@login_not_required
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})
