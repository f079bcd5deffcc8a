from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from sessions_app import staff_views, views


class FaviconRedirect(RedirectView):
    """Resolved per request: with the manifest storage the icon's name is known only after collectstatic."""

    permanent = True

    def get_redirect_url(self, *args, **kwargs) -> str:
        return static("favicon.svg")


urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/password_change/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path(
        "accounts/password_change/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    path("accounts/signup/", views.signup, name="signup"),
    # Staff views beside the admin (sessions_app/staff_views.py), before its catch-all: staff only via admin_view.
    path("admin/overview/", admin.site.admin_view(staff_views.overview), name="staff_overview"),
    path("admin/errors/", admin.site.admin_view(staff_views.errors), name="staff_errors"),
    path("admin/usage-cost/", admin.site.admin_view(staff_views.usage), name="staff_usage"),
    path("admin/", admin.site.urls),
    # Browsers ask for /favicon.ico where a page names no icon (the admin's pages).
    path("favicon.ico", login_not_required(FaviconRedirect.as_view()), name="favicon"),
    path("", include("sessions_app.urls")),
]
