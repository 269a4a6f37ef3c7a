from django.db import migrations

SEED = [
    # service_name, model_name, label, thinking, streaming, position
    ("google-gemini", "gemini-2.0-flash", "Gemini 2.0 Flash", False, True, 10),
    ("google-gemini", "gemini-3-pro-thinking-preview", "Gemini 3 Pro (thinking)", True, True, 20),
    ("google-gemini", "gemini-2.5-flash-image", "Gemini image", False, False, 30),
]


def seed(apps, schema_editor):
    GatewayModel = apps.get_model("conversations", "GatewayModel")
    for service_name, model_name, label, thinking, streaming, position in SEED:
        GatewayModel.objects.get_or_create(
            service_name=service_name,
            model_name=model_name,
            defaults={"label": label, "thinking": thinking, "streaming": streaming, "position": position},
        )


class Migration(migrations.Migration):
    dependencies = [("conversations", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
