"""UpstreamConnection.owner: the conversation's owner on the row itself, so that the upstream-socket guard
counts a user's open rows from one table (relay/limits.py). Rows written before are filled in from their
conversations; then the column is required."""

from django.conf import settings
from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def fill_owners(apps, schema_editor):
    UpstreamConnection = apps.get_model("sessions_app", "UpstreamConnection")
    Conversation = apps.get_model("sessions_app", "Conversation")
    owners = Conversation.objects.filter(pk=OuterRef("conversation_id")).values("owner_id")[:1]
    UpstreamConnection.objects.using(schema_editor.connection.alias).update(owner_id=Subquery(owners))


class Migration(migrations.Migration):

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("sessions_app", "0010_connection_resent_reasons"),
    ]

    operations = [
        migrations.AddField(
            model_name="upstreamconnection",
            name="owner",
            field=models.ForeignKey(db_constraint=False, db_index=False, editable=False, null=True,
                                    on_delete=models.deletion.DO_NOTHING, related_name="+",
                                    to=settings.AUTH_USER_MODEL),
        ),
        migrations.RunPython(fill_owners, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="upstreamconnection",
            name="owner",
            field=models.ForeignKey(db_constraint=False, db_index=False, editable=False,
                                    on_delete=models.deletion.DO_NOTHING, related_name="+",
                                    to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddIndex(
            model_name="upstreamconnection",
            index=models.Index(condition=models.Q(closed_at__isnull=True), fields=["owner"],
                               name="connection_owner_open"),
        ),
    ]
