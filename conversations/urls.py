from django.conf import settings
from django.urls import path, register_converter

from conversations import views
from conversations.costs import views as costs
from conversations.gateway import demo as demo_gateway
from conversations.keys import views as keys


class IdConverter:
    """A row's id: at most the largest 64-bit id. A bigger number in a URL is a 404 here:
    lookups through a foreign key (conversation_id=...) hand it to the database as it
    is, where it overflowed into a 500."""

    regex = "[0-9]{1,19}"
    largest = 2**63 - 1

    def to_python(self, value: str) -> int:
        number = int(value)
        if number > self.largest:
            raise ValueError(value)  # no match: a 404
        return number

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(IdConverter, "id")

urlpatterns = [
    path("", views.index, name="index"),
    path("c/<id:conversation_id>/", views.conversation, name="conversation"),
    path("c/<id:conversation_id>/heading/", views.heading, name="heading"),
    path("c/<id:conversation_id>/rename/", views.rename, name="rename"),
    path("c/<id:conversation_id>/delete/", views.delete, name="delete"),
    path("c/<id:conversation_id>/settings/", views.conversation_settings, name="settings"),
    path("c/<id:conversation_id>/export.<fmt>", views.export, name="export"),
    path("c/<id:conversation_id>/thread/", views.thread, name="thread"),
    path("c/<id:conversation_id>/m/<id:message_id>/", views.message, name="message"),
    path("c/<id:conversation_id>/m/<id:message_id>/edit/", views.edit_message, name="edit-message"),
    path("c/<id:conversation_id>/m/<id:message_id>/source/", views.message_source, name="message-source"),
    path("conversations/", views.conversation_page, name="conversation-page"),
    path("search/", views.search, name="search"),
    path("attachments/<id:attachment_id>/", views.attachment, name="attachment"),
    path("accounts/signup/", views.signup, name="signup"),
    path("keys/", keys.api_keys, name="api-keys"),
    path("keys/<id:key_id>/use/", keys.use_api_key, name="use-api-key"),
    path("keys/<id:key_id>/replace/", keys.replace_api_key, name="replace-api-key"),
    path("keys/<id:key_id>/delete/", keys.delete_api_key, name="delete-api-key"),
    path("usage/", costs.usage, name="usage"),
    path("dashboard/costs/", costs.costs, name="costs"),
    path("dashboard/costs/top/", costs.top_conversations, name="costs-top"),
    path("dashboard/costs/<slug:table>.csv", costs.costs_csv, name="costs-csv"),
]

if settings.DEMO_GATEWAY:
    urlpatterns += [
        path("demo-gateway/api/v1/generate/stream", demo_gateway.generate_stream, name="demo-generate-stream"),
        path("demo-gateway/api/v1/generate", demo_gateway.generate, name="demo-generate"),
    ]
