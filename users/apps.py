from django.apps import AppConfig


class UsersConfig(AppConfig):
    name = "users"
    verbose_name = "Policy subjects"

    def ready(self) -> None:
        from attributes import holders
        from users.models import User

        holders.register("user", lambda tenant_id: User.objects.filter(tenant_id=tenant_id))
