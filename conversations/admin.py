from django import forms
from django.contrib import admin
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters

from conversations.costs import budgets
from conversations.costs.money import format_money
from conversations.keys import vault
from conversations.models import (
    ApiKey,
    Attachment,
    Budget,
    Conversation,
    CostLog,
    GatewayModel,
    Message,
    SiteSettings,
)


@admin.register(GatewayModel)
class GatewayModelAdmin(admin.ModelAdmin):
    list_display = ["label", "service_name", "model_name", "thinking", "streaming", "enabled", "position"]
    list_editable = ["enabled", "position"]


class MessageInline(admin.TabularInline):
    model = Message
    readonly_fields = ("role", "parent", "selected", "status", "model_name", "content", "error")
    fields = readonly_fields
    extra = 0
    can_delete = False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["title", "user", "model", "updated_at"]
    list_filter = ["model"]
    search_fields = ["title", "user__username"]
    inlines = [MessageInline]


@admin.register(Attachment)
class AttachmentAdmin(admin.ModelAdmin):
    """Files answers brought (read-only; the file itself is served to its owner only)."""

    list_display = ["id", "message", "mime_type", "size", "width", "height", "source", "created_at"]
    list_filter = ["mime_type", "source"]
    readonly_fields = ("message", "mime_type", "size", "width", "height", "source", "source_url", "created_at")
    fields = readonly_fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


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


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Who has keys, masked. Revoking is deleting; nobody can read a key here."""

    list_display = ["user", "label", "masked", "in_use", "created_at", "last_used_at", "refused_at"]
    list_filter = ["in_use"]
    search_fields = ["user__username", "label"]
    readonly_fields = ("user", "label", "masked", "in_use", "created_at", "last_used_at", "refused_at")
    fields = readonly_fields
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False  # users add their own keys; the admin never types one for them

    def has_change_permission(self, request, obj=None):
        return False

    @admin.action(description="Revoke (delete) the selected keys", permissions=["delete"])
    def revoke(self, request, queryset):
        count = queryset.count()
        queryset.delete()
        self.message_user(request, f"Revoked {count} key(s).")


class SiteSettingsForm(forms.ModelForm):
    new_shared_key = forms.CharField(
        label="New shared key",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Leave empty to keep the current one. It is stored encrypted and never shown again.",
    )
    clear_shared_key = forms.BooleanField(label="Remove the shared key set here", required=False)

    class Meta:
        model = SiteSettings
        fields = ["allow_shared_key", "default_monthly_budget"]

    def clean_new_shared_key(self):
        value = self.cleaned_data["new_shared_key"]
        return vault.clean_value(value) if value.strip() else ""


@admin.register(SiteSettings)
class SiteSettingsAdmin(admin.ModelAdmin):
    form = SiteSettingsForm
    fields = ["shared_key_masked", "new_shared_key", "clear_shared_key", "allow_shared_key", "default_monthly_budget"]
    readonly_fields = ["shared_key_masked"]

    def has_add_permission(self, request):
        return not SiteSettings.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False

    @method_decorator(sensitive_post_parameters("new_shared_key"))
    def changeform_view(self, request, *args, **kwargs):
        return super().changeform_view(request, *args, **kwargs)

    def save_model(self, request, obj, form, change):
        if form.cleaned_data["clear_shared_key"]:
            obj.set_shared_key("")
        elif form.cleaned_data["new_shared_key"]:
            obj.set_shared_key(form.cleaned_data["new_shared_key"])
        super().save_model(request, obj, form, change)


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    """Per-user monthly budgets; users without one get the default in Site settings."""

    list_display = ["user", "limit", "spent_this_month"]
    search_fields = ["user__username"]
    autocomplete_fields = ["user"]

    @admin.display(description="Monthly limit")
    def limit(self, obj):
        return format_money(obj.monthly_limit) if obj.monthly_limit is not None else "No limit"

    @admin.display(description="Spent this month")
    def spent_this_month(self, obj):
        return format_money(budgets.spent_this_month(obj.user))
