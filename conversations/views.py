from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model, login
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from conversations.forms import ApiKeyForm, ReplaceApiKeyForm, SignupForm
from conversations import budgets, generation
from conversations.models import ApiKey, Conversation, GatewayModel, Message, SiteSettings


def _get_conversation(request, conversation_id: int) -> Conversation:
    """The user's own conversation; anyone else's is a 404, not a 403."""
    return get_object_or_404(Conversation, pk=conversation_id, user=request.user)


def _chat(request, conversation: Conversation | None):
    # Answers left "streaming" by a process that died show as interrupted, never spinning.
    generation.sweep_orphans(request.user.pk)
    models = list(GatewayModel.for_chat())
    messages = []
    selected_model_id = models[0].pk if models else None
    if conversation is not None:
        messages = list(conversation.messages.select_related("cost_log"))
        if conversation.model_id:
            selected_model_id = conversation.model_id
    answers = [m for m in messages if m.role == Message.Role.ASSISTANT]
    ctx = {
        "conversation": conversation,
        "conversations": request.user.conversations.only("id", "title"),
        "generating_ids": set(
            Message.objects.filter(conversation__user=request.user, status=Message.Status.STREAMING).values_list(
                "conversation_id", flat=True
            )
        ),
        "messages": messages,
        "last_answer_id": answers[-1].pk if answers else None,
        "models": models,
        "selected_model_id": selected_model_id,
        "generating": any(m.is_streaming for m in answers),
        "budget": budgets.state(request.user),
    }
    return render(request, "conversations/chat.html", ctx)


@login_required
def index(request):
    return _chat(request, None)


@login_required
def conversation(request, conversation_id: int):
    return _chat(request, _get_conversation(request, conversation_id))


def signup(request):
    User = get_user_model()
    if not settings.ALLOW_SIGNUP:
        return render(request, "registration/signup_closed.html", status=403)
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            user = form.save(commit=False)
            # The first account runs the site.
            if not User.objects.exists():
                user.is_staff = user.is_superuser = True
            user.save()
        login(request, user)
        return redirect("index")
    return render(request, "registration/signup.html", {"form": form, "first_user": not User.objects.exists()})


# --- API keys ------------------------------------------------------------------------


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
