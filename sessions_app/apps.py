from django.apps import AppConfig


class SessionsAppConfig(AppConfig):
    name = "sessions_app"
    verbose_name = "Switchboard"

    def ready(self) -> None:
        from . import checks  # noqa: F401 (registers the deploy checks)
