"""Pages. Every page needs a signed-in user (LoginRequiredMiddleware) except login/sign-up/health."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.forms import UserCreationForm
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from . import health, selectors, services
from .forms import ConversationSettingsForm
from .models import ApiToken

DASHBOARD_PAGE_SIZE = 50


@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    """The user's conversations: `?q=` searches titles and messages, `?show=archived` lists the archived."""
    query = request.GET.get("q", "").strip()[:selectors.SEARCH_MAX_CHARS]
    archived = request.GET.get("show") == "archived"
    conversations = selectors.conversation_rows(user=request.user, query=query, archived=archived)
    # get_page: a missing or non-numeric page is the first, one past the end is the last.
    page = Paginator(conversations, DASHBOARD_PAGE_SIZE).get_page(request.GET.get("page"))
    kept = urlencode({key: value for key, value in (("q", query), ("show", "archived" if archived else "")) if value})
    return render(request, "sessions_app/dashboard.html", {
        "conversations": page.object_list, "page": page, "query": query, "archived": archived,
        "page_query": f"{kept}&" if kept else "",  # partials/pagination.html keeps the search on every page link
        "active_url": _dashboard_url(q=query), "archived_url": _dashboard_url(q=query, show="archived"),
        "clear_url": _dashboard_url(show="archived" if archived else ""),
        "here": request.get_full_path(),
    })


def _dashboard_url(**params: str) -> str:
    kept = urlencode({key: value for key, value in params.items() if value})
    return reverse("dashboard") + (f"?{kept}" if kept else "")


def _next_url(request: HttpRequest, value: str | None) -> str:
    """Where a dashboard action returns to (the list with its search and page), never off this site."""
    if value and url_has_allowed_host_and_scheme(value, allowed_hosts={request.get_host()},
                                                 require_https=request.is_secure()):
        return value
    return reverse("dashboard")


@require_http_methods(["GET", "POST"])
def conversation_rename(request: HttpRequest, pk) -> HttpResponse:
    """GET: a page with the form (the dashboard opens the same form inline with dashboard.js); POST renames.
    Owner only: staff viewers of another's conversation get 404 like everyone else."""
    conversation = selectors.conversation_get(user=request.user, pk=pk, for_write=True)
    if request.method == "GET":
        return render(request, "sessions_app/conversation_rename.html", {
            "conversation": conversation, "next": _next_url(request, request.GET.get("next")),
            "title_max": services.TITLE_MAX_CHARS})
    try:
        services.conversation_rename(conversation=conversation, title=request.POST.get("title", ""))
    except ValidationError as exc:
        messages.error(request, exc.messages[0])
    else:
        messages.success(request, f"Renamed to “{conversation.title}”.")
    return redirect(_next_url(request, request.POST.get("next")))


@require_POST
def conversation_archive(request: HttpRequest, pk) -> HttpResponse:
    conversation = services.conversation_archive(
        conversation=selectors.conversation_get(user=request.user, pk=pk, for_write=True))
    messages.success(request, f"Archived “{conversation}”: it is listed under Archived now.")
    return redirect(_next_url(request, request.POST.get("next")))


@require_POST
def conversation_unarchive(request: HttpRequest, pk) -> HttpResponse:
    conversation = services.conversation_unarchive(
        conversation=selectors.conversation_get(user=request.user, pk=pk, for_write=True))
    messages.success(request, f"“{conversation}” is back among your active conversations.")
    return redirect(_next_url(request, request.POST.get("next")))


@require_http_methods(["GET", "POST"])
def conversation_delete(request: HttpRequest, pk) -> HttpResponse:
    """GET shows what will go and asks; POST deletes. Refused while a response streams (services)."""
    conversation = selectors.conversation_get(user=request.user, pk=pk, for_write=True)
    if request.method == "GET":
        return render(request, "sessions_app/conversation_delete.html", {
            "conversation": conversation, "size": selectors.conversation_size(conversation=conversation),
            "streaming": selectors.conversation_streaming(conversation=conversation),
            "next": _next_url(request, request.GET.get("next"))})
    back, name, pk = _next_url(request, request.POST.get("next")), str(conversation), conversation.pk
    try:
        responses = services.conversation_delete(conversation=conversation)
    except services.ConversationStreaming:
        messages.error(request, f"“{name}” is streaming a response right now. Delete it once the response has "
                                "ended.")
        return redirect(f"{reverse('conversation_delete', args=[pk])}?{urlencode({'next': back})}")
    messages.success(request, f"Deleted “{name}” and its {responses} response{pluralize(responses)}.")
    return redirect(back)


@require_http_methods(["GET", "POST"])
def conversation_new(request: HttpRequest) -> HttpResponse:
    """GET: the settings form as a page (the dashboard's dialog holds the same form); POST creates the
    conversation once every field is valid, else shows the form again with the errors (nothing is made)."""
    form = ConversationSettingsForm(request.POST if request.method == "POST" else None, user=request.user)
    if request.method == "POST" and form.is_valid():
        settings_ = form.settings()
        conversation = services.conversation_create(
            owner=request.user, profile=settings_.pop("upstream_profile"), **settings_)
        return redirect("conversation_detail", pk=conversation.pk)
    return render(request, "sessions_app/conversation_new.html", {"form": form},
                  status=400 if form.is_bound else 200)


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


@require_http_methods(["GET", "POST"])
def conversation_settings(request: HttpRequest, pk) -> HttpResponse:
    """The owner's settings form (the conversation page's drawer posts it with fetch and gets JSON
    `{ok, errors: {field: [messages]}, settings}`; without JavaScript it is a page). Saved all at once,
    or not at all; the next turn uses them once the page told its socket (docs/protocol.md §1)."""
    conversation = selectors.conversation_get(user=request.user, pk=pk, for_write=True)
    form = ConversationSettingsForm(request.POST if request.method == "POST" else None, user=request.user,
                                    instance=conversation)
    if request.method == "POST":
        if form.is_valid():
            conversation = services.conversation_settings_update(conversation=conversation, **form.settings())
            if _wants_json(request):
                return JsonResponse({"ok": True, "errors": {},
                                     "settings": selectors.conversation_settings(conversation=conversation)})
            messages.success(request, "Settings saved: your next message uses them.")
            return redirect("conversation_detail", pk=conversation.pk)
        if _wants_json(request):
            return JsonResponse({"ok": False, "errors": form.errors_by_field()}, status=400)
        conversation.refresh_from_db()  # the form wrote the refused values onto it
    return render(request, "sessions_app/conversation_settings.html",
                  {"form": form, "conversation": conversation}, status=400 if form.is_bound else 200)


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
            # The settings drawer (the owner's only; conversation_settings takes what it posts).
            "settings_form": ConversationSettingsForm(user=request.user, instance=conversation)
            if conversation.owner_id == request.user.pk else None,
        },
    )


NEW_TOKEN_SESSION_KEY = "switchboard_new_api_token"


@require_http_methods(["GET", "POST"])
def token_list(request: HttpRequest) -> HttpResponse:
    """Create with POST/redirect/GET: the new secret rides in the session to the one page that shows it,
    so a reload never makes a second token and the secret is shown exactly once."""
    if request.method == "POST":
        token, raw = ApiToken.issue(user=request.user, name=request.POST.get("name", "").strip()[:100])
        request.session[NEW_TOKEN_SESSION_KEY] = {"pk": token.pk, "raw": raw}
        return redirect("token_list")
    new = request.session.pop(NEW_TOKEN_SESSION_KEY, None)
    socket_base = request.build_absolute_uri("/v1").replace("http://", "ws://", 1).replace("https://", "wss://", 1)
    profile = selectors.default_profile() if new else None  # the snippet's model: what a gateway create gets
    response = render(
        request,
        "sessions_app/tokens.html",
        {"tokens": selectors.token_list(user=request.user), "new_token": new["raw"] if new else None,
         "new_token_pk": new["pk"] if new else None, "websocket_base_url": socket_base,
         "snippet_model": (profile.default_model if profile else "") or settings.SWITCHBOARD_DEFAULT_MODEL},
    )
    response["Cache-Control"] = "no-store"  # the page may hold a token shown only once
    return response


@require_http_methods(["GET", "POST"])
def token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    """GET asks for confirmation; POST revokes (and closes the token's open sockets within seconds)."""
    token = get_object_or_404(ApiToken, pk=pk, user=request.user)
    if request.method == "GET":
        return render(request, "sessions_app/token_revoke.html", {"token": token})
    if token.is_active:
        token.revoke()
        messages.success(request, f"Token {token.prefix}… revoked. Sockets open with it close within seconds.")
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
    """Each dependency's state (health.py); 503 only while the database is down."""
    report, status = health.health_report()
    response = JsonResponse(report, status=status)
    response["Cache-Control"] = "no-store"
    response._has_been_logged = True  # a probe's 503 is its answer, not a server error for django.request
    return response
