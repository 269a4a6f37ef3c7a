from django.conf import settings
from django.urls import path

from conversations import demo_gateway, views

urlpatterns = [
    path("", views.index, name="index"),
    path("c/<int:conversation_id>/", views.conversation, name="conversation"),
    path("accounts/signup/", views.signup, name="signup"),
]

if settings.DEMO_GATEWAY:
    urlpatterns += [
        path("demo-gateway/api/v1/generate/stream", demo_gateway.generate_stream, name="demo-generate-stream"),
    ]
