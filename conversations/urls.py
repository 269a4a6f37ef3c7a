from django.conf import settings
from django.urls import path

from conversations import views
from conversations.costs import views as costs
from conversations.gateway import demo as demo_gateway
from conversations.keys import views as keys

urlpatterns = [
    path("", views.index, name="index"),
    path("c/<int:conversation_id>/", views.conversation, name="conversation"),
    path("c/<int:conversation_id>/heading/", views.heading, name="heading"),
    path("c/<int:conversation_id>/rename/", views.rename, name="rename"),
    path("c/<int:conversation_id>/delete/", views.delete, name="delete"),
    path("c/<int:conversation_id>/settings/", views.conversation_settings, name="settings"),
    path("c/<int:conversation_id>/export.<fmt>", views.export, name="export"),
    path("c/<int:conversation_id>/m/<int:message_id>/", views.message, name="message"),
    path("c/<int:conversation_id>/m/<int:message_id>/edit/", views.edit_message, name="edit-message"),
    path("conversations/", views.conversation_page, name="conversation-page"),
    path("search/", views.search, name="search"),
    path("attachments/<int:attachment_id>/", views.attachment, name="attachment"),
    path("accounts/signup/", views.signup, name="signup"),
    path("keys/", keys.api_keys, name="api-keys"),
    path("keys/<int:key_id>/use/", keys.use_api_key, name="use-api-key"),
    path("keys/<int:key_id>/replace/", keys.replace_api_key, name="replace-api-key"),
    path("keys/<int:key_id>/delete/", keys.delete_api_key, name="delete-api-key"),
    path("usage/", costs.usage, name="usage"),
    path("dashboard/costs/", costs.costs, name="costs"),
    path("dashboard/costs/<slug:table>.csv", costs.costs_csv, name="costs-csv"),
]

if settings.DEMO_GATEWAY:
    urlpatterns += [
        path("demo-gateway/api/v1/generate/stream", demo_gateway.generate_stream, name="demo-generate-stream"),
        path("demo-gateway/api/v1/generate", demo_gateway.generate, name="demo-generate"),
    ]
