from django.contrib import admin

from conversations.models import Conversation, CostLog, GatewayModel, Message


@admin.register(GatewayModel)
class GatewayModelAdmin(admin.ModelAdmin):
    list_display = ["label", "service_name", "model_name", "thinking", "streaming", "enabled", "position"]
    list_editable = ["enabled", "position"]


class MessageInline(admin.TabularInline):
    model = Message
    fields = ["role", "status", "model_name", "content", "error"]
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["title", "user", "model", "updated_at"]
    list_filter = ["model"]
    search_fields = ["title", "user__username"]
    inlines = [MessageInline]


@admin.register(CostLog)
class CostLogAdmin(admin.ModelAdmin):
    """The ledger is written by generations only: read-only here."""

    list_display = ["created_at", "user", "model_name", "total_tokens", "cost_total"]
    list_filter = ["service_name", "model_name"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
