from django.apps import AppConfig


class SessionsAppConfig(AppConfig):
    name = "sessions_app"
    verbose_name = "Switchboard"

    def ready(self) -> None:
        from .live import revocation  # noqa: F401 (checks: registers the deploy checks)

        revocation.connect_signals()
