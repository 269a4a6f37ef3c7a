from django.conf import settings
from django.urls import path

from conversations import dashboard, demo_gateway, views

urlpatterns = [
    path("", views.index, name="index"),
    path("c/<int:conversation_id>/", views.conversation, name="conversation"),
    path("accounts/signup/", views.signup, name="signup"),
    path("keys/", views.api_keys, name="api-keys"),
    path("keys/<int:key_id>/use/", views.use_api_key, name="use-api-key"),
    path("keys/<int:key_id>/replace/", views.replace_api_key, name="replace-api-key"),
    path("keys/<int:key_id>/delete/", views.delete_api_key, name="delete-api-key"),
    path("usage/", dashboard.usage, name="usage"),
    path("dashboard/costs/", dashboard.costs, name="costs"),
    path("dashboard/costs/<slug:table>.csv", dashboard.costs_csv, name="costs-csv"),
]

if settings.DEMO_GATEWAY:
    urlpatterns += [
        path("demo-gateway/api/v1/generate/stream", demo_gateway.generate_stream, name="demo-generate-stream"),
    ]
