"""ResponseRecord.accepted_at: when the relay accepted a request, which the conversation page shows live (from
switchboard.request) and after a reload (from switchboard.history). sent_at stays when it left upstream. Rows
written before keep it empty; the page shows their sent_at."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('sessions_app', '0011_connection_owner'),
    ]

    operations = [
        migrations.AddField(
            model_name='responserecord',
            name='accepted_at',
            field=models.DateTimeField(blank=True, help_text='When the relay accepted the request: the time the conversation page shows, live and after a reload. sent_at is when it left upstream (later when the upstream socket had to open first).', null=True),
        ),
    ]
