"""Existing conversations become trees: each question follows the last answer before it,
each answer its question; of several answers to one question (Retry), the last is shown."""

from django.db import migrations


def link(apps, schema_editor):
    Message = apps.get_model("conversations", "Message")
    changed = []
    conversation, question, leaf, shown = None, None, None, {}
    rows = Message.objects.order_by("conversation_id", "id").only(
        "id", "conversation_id", "role", "parent_id", "selected"
    )
    for m in rows.iterator(chunk_size=2000):
        if m.conversation_id != conversation:
            conversation, question, leaf = m.conversation_id, None, None
        if m.role == "user":
            m.parent_id = leaf.pk if leaf else None
            question = m
        else:
            m.parent_id = question.pk if question else None
        # The newest sibling is shown; an older one that was shown is not anymore.
        key = (m.conversation_id, m.parent_id)
        if key in shown:
            shown[key].selected = False
        m.selected = True
        shown[key] = m
        leaf = m
        changed.append(m)
    Message.objects.bulk_update(changed, ["parent_id", "selected"], batch_size=1000)


class Migration(migrations.Migration):
    dependencies = [("conversations", "0005_versions_settings_attachments")]
    operations = [migrations.RunPython(link, migrations.RunPython.noop)]
