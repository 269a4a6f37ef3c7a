"""A user's own gateway keys: add, mark in use, replace, delete (never shown again)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from conversations.keys.forms import ApiKeyForm, ReplaceApiKeyForm
from conversations.models import ApiKey, SiteSettings


def _get_api_key(request, key_id: int) -> ApiKey:
    return get_object_or_404(ApiKey, pk=key_id, user=request.user)


@login_required
@sensitive_post_parameters("value")
def api_keys(request):
    form = ApiKeyForm(request.user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        key = ApiKey(user=request.user, label=form.cleaned_data["label"])
        key.set_secret(form.cleaned_data["value"])
        with transaction.atomic():
            key.save()
            if not request.user.api_keys.filter(in_use=True).exists():
                key.use()
        messages.success(request, f"Saved “{key.label}” ({key.masked}).")
        return redirect("api-keys")
    ctx = {
        "keys": request.user.api_keys.all(),
        "form": form,
        "replace_form": ReplaceApiKeyForm(),
        "site": SiteSettings.load(),
    }
    return render(request, "conversations/api_keys.html", ctx, status=400 if form.errors else 200)


@login_required
@require_POST
def use_api_key(request, key_id: int):
    key = _get_api_key(request, key_id)
    key.use()
    messages.success(request, f"Your chats now use “{key.label}”.")
    return redirect("api-keys")


@login_required
@require_POST
@sensitive_post_parameters("value")
def replace_api_key(request, key_id: int):
    key = _get_api_key(request, key_id)
    form = ReplaceApiKeyForm(request.POST)
    if not form.is_valid():
        for error in form.errors["value"]:
            messages.error(request, f"“{key.label}” was not changed: {error}")
        return redirect("api-keys")
    key.set_secret(form.cleaned_data["value"])
    key.save(update_fields=["ciphertext", "masked", "refused_at"])
    messages.success(request, f"Replaced the value of “{key.label}” ({key.masked}).")
    return redirect("api-keys")


@login_required
def delete_api_key(request, key_id: int):
    key = _get_api_key(request, key_id)
    if request.method == "POST":
        with transaction.atomic():
            key.delete()
            if key.in_use and (successor := ApiKey.for_user(request.user)):
                successor.use()
        messages.success(request, f"Deleted “{key.label}”.")
        return redirect("api-keys")
    return render(request, "conversations/api_key_delete.html", {"key": key})
