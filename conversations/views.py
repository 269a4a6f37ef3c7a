from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model, login
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect, render

from conversations.forms import SignupForm
from conversations.models import Conversation, GatewayModel


def _get_conversation(request, conversation_id: int) -> Conversation:
    """The user's own conversation; anyone else's is a 404, not a 403."""
    return get_object_or_404(Conversation, pk=conversation_id, user=request.user)


def _chat(request, conversation: Conversation | None):
    models = list(GatewayModel.for_chat())
    messages = []
    generating = False
    selected_model_id = models[0].pk if models else None
    if conversation is not None:
        messages = list(conversation.messages.select_related("cost_log"))
        generating = any(m.is_streaming for m in messages)
        if conversation.model_id:
            selected_model_id = conversation.model_id
    ctx = {
        "conversation": conversation,
        "conversations": request.user.conversations.only("id", "title"),
        "messages": messages,
        "models": models,
        "selected_model_id": selected_model_id,
        "generating": generating,
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
