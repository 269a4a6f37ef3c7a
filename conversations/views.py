from __future__ import annotations

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model, login
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import FileResponse, Http404, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_POST

from conversations import exports, sidebar
from conversations.costs import budgets
from conversations.forms import RenameForm, SettingsForm, SignupForm
from conversations.models import (
    Attachment,
    Conversation,
    GatewayModel,
    Message,
)
from conversations.relay import events, generation
from conversations.search import clean_query, find


def _get_conversation(request, conversation_id: int) -> Conversation:
    """The user's own conversation; anyone else's is a 404, not a 403."""
    return get_object_or_404(Conversation, pk=conversation_id, user=request.user)


def _get_message(request, conversation_id: int, message_id: int) -> Message:
    return get_object_or_404(
        Message.objects.select_related("conversation"),
        pk=message_id,
        conversation_id=conversation_id,
        conversation__user=request.user,
    )


def _chat(request, conversation: Conversation | None):
    # Answers left "streaming" by a process that died show as interrupted, never spinning.
    generation.sweep_orphans(request.user.pk)
    models = list(GatewayModel.for_chat())
    messages = []
    selected_model_id = _model_used_last(request.user, models)
    if conversation is not None:
        messages = conversation.thread()  # the versions shown
        if conversation.model_id:
            selected_model_id = conversation.model_id
    answers = [m for m in messages if m.role == Message.Role.ASSISTANT]
    ctx = {
        "conversation": conversation,
        "generating_ids": set(
            Message.objects.filter(conversation__user=request.user, status=Message.Status.STREAMING).values_list(
                "conversation_id", flat=True
            )
        ),
        "thread": messages,
        "last_answer_id": answers[-1].pk if answers else None,
        "models": models,
        "selected_model_id": selected_model_id,
        "generating": any(m.is_streaming for m in answers),
        "budget": budgets.state(request.user),
        "settings_form": SettingsForm.for_conversation(conversation) if conversation else SettingsForm(),
        **sidebar.page(request.user),
    }
    return render(request, "conversations/chat.html", ctx)


def _model_used_last(user, models: list[GatewayModel]) -> int | None:
    """What a new chat starts on: the model of the user's latest answer (a conversation
    follows it), if it can still be picked; else the first."""
    last = (
        Conversation.objects.filter(user=user, model__in=models)
        .order_by("-updated_at", "-pk")
        .values_list("model_id", flat=True)
        .first()
    )
    return last or (models[0].pk if models else None)


@login_required
def index(request):
    return _chat(request, None)


@login_required
def conversation(request, conversation_id: int):
    return _chat(request, _get_conversation(request, conversation_id))


# --- the sidebar: pages and search ---------------------------------------------------


@login_required
def conversation_page(request):
    """The next page of the sidebar (it loads as the list scrolls)."""
    try:
        ctx = sidebar.page(request.user, request.GET.get("after", ""))
    except ValueError:
        return HttpResponseBadRequest("That page of conversations does not exist.")
    ctx["generating_ids"] = set(
        Message.objects.filter(conversation__user=request.user, status=Message.Status.STREAMING).values_list(
            "conversation_id", flat=True
        )
    )
    return render(request, "conversations/parts.html#sidebar_page", ctx)


@login_required
def search(request):
    """The user's conversations whose title or messages contain the words typed (only theirs)."""
    query = clean_query(request.GET.get("q", ""))
    ctx = {"query": query}
    if query:
        ctx.update(find(request.user, query))
    return render(request, "conversations/parts.html#search_results", ctx)


# --- managing a conversation -----------------------------------------------------------


def _tell_sidebars(user_id: int, event: events.SidebarUpdate | events.SidebarRemove) -> None:
    """Every open page of the user updates its sidebar (their sockets are in this group)."""
    async_to_sync(events.layer().group_send)(events.user_group(user_id), event)


@login_required
def heading(request, conversation_id: int):
    """The conversation's title and actions (what Cancel puts back)."""
    return render(
        request, "conversations/chat.html#heading", {"conversation": _get_conversation(request, conversation_id)}
    )


@login_required
def rename(request, conversation_id: int):
    conversation = _get_conversation(request, conversation_id)
    if request.method == "POST":
        form = RenameForm(request.POST)
        if form.is_valid():
            conversation.title = form.cleaned_data["title"]
            conversation.save(update_fields=["title"])
            _tell_sidebars(request.user.pk, events.sidebar_update(conversation.pk))
            if not request.htmx:
                return redirect(conversation)
            response = render(request, "conversations/chat.html#heading", {"conversation": conversation})
            # The tab's own sidebar item follows at once (the others' through their sockets).
            response.content += render_to_string(
                "conversations/parts.html#sidebar_item",
                {"c": conversation, "conversation": conversation, "oob": True},
                request=request,
            ).encode()
            return response
        status = 422  # swapped in by htmx (base.html), like a 200
    else:
        form = RenameForm(initial={"title": conversation.title})
        status = 200
    return render(
        request, "conversations/parts.html#rename_form", {"conversation": conversation, "form": form}, status=status
    )


@login_required
def delete(request, conversation_id: int):
    conversation = _get_conversation(request, conversation_id)
    generation.sweep_orphans(request.user.pk)
    generating = conversation.messages.filter(status=Message.Status.STREAMING).exists()
    if request.method == "POST":
        if generating:
            return HttpResponse("An answer is still being generated here. Stop it first.", status=409)
        title = conversation.title
        with transaction.atomic():
            # Messages and their attachments (files on commit) go with it; the ledger's
            # rows stay, their conversation set to NULL ("deleted conversations").
            conversation.delete()
        _tell_sidebars(request.user.pk, events.sidebar_remove(conversation_id))
        messages.success(request, f"Deleted “{title}”.")
        if request.htmx:
            return HttpResponse(headers={"HX-Redirect": reverse("index")})
        return redirect("index")
    ctx = {
        "conversation": conversation,
        "generating": generating,
        "attachments": Attachment.objects.filter(message__conversation=conversation).count(),
    }
    if request.htmx:
        return render(request, "conversations/parts.html#delete_confirm", ctx)
    return render(request, "conversations/delete.html", ctx)


@login_required
@require_POST
def conversation_settings(request, conversation_id: int):
    conversation = _get_conversation(request, conversation_id)
    form = SettingsForm(request.POST)
    saved = form.is_valid()
    if saved:
        for field in SettingsForm.FIELDS:
            setattr(conversation, field, form.cleaned_data[field])
        conversation.save(update_fields=list(SettingsForm.FIELDS))
        form = SettingsForm.for_conversation(conversation)
    ctx = {"conversation": conversation, "settings_form": form, "saved": saved, "settings_open": True}
    return render(request, "conversations/parts.html#settings_panel", ctx, status=200 if saved else 422)


@login_required
def export(request, conversation_id: int, fmt: str):
    conversation = _get_conversation(request, conversation_id)
    if fmt not in ("md", "json"):
        raise Http404("Export as .md or .json.")
    base_url = request.build_absolute_uri("/").rstrip("/")
    if fmt == "md":
        body, content_type = exports.markdown(conversation, base_url), "text/markdown; charset=utf-8"
    else:
        body, content_type = exports.json_document(conversation, base_url), "application/json"
    response = HttpResponse(body, content_type=content_type)
    filename = exports.filename(conversation, fmt)
    # Never None for an attachment (only an inline response without a name has no header).
    response["Content-Disposition"] = content_disposition_header(True, filename) or "attachment"
    return response


# --- messages and their files ------------------------------------------------------------


@login_required
def message(request, conversation_id: int, message_id: int):
    """One message as the page shows it (Cancel on an edit puts it back)."""
    m = _get_message(request, conversation_id, message_id)
    m.conversation.tree().annotate([m])
    leaf = m.conversation.last_answer()
    ctx = {"m": m, "last_answer_id": leaf.pk if leaf else None}
    return render(request, "conversations/chat.html#message", ctx)


@login_required
def message_source(request, conversation_id: int, message_id: int):
    """A message as written (an answer's markdown), for its Copy button: fetched on the
    click, so the page does not carry every answer twice."""
    m = _get_message(request, conversation_id, message_id)
    response = HttpResponse(m.content, content_type="text/plain; charset=utf-8")
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


@login_required
def thread(request, conversation_id: int):
    """The messages shown, those before `?before=<id>` if given: for a page whose socket
    could not carry them in one message (fragments.thread_for)."""
    conversation = _get_conversation(request, conversation_id)
    shown = conversation.thread()
    answers = [m for m in shown if m.role == Message.Role.ASSISTANT]
    ids = [m.pk for m in shown]
    before = request.GET.get("before", "")
    if before.isascii() and before.isdigit() and int(before) in ids:
        shown = shown[: ids.index(int(before))]
    ctx = {"thread": shown, "last_answer_id": answers[-1].pk if answers else None}
    return render(request, "conversations/chat.html#message_list", ctx)


@login_required
def edit_message(request, conversation_id: int, message_id: int):
    """A question of the user's as a form: sent, it becomes a new version."""
    m = _get_message(request, conversation_id, message_id)
    if m.role != Message.Role.USER:
        raise Http404("Only your own messages can be edited.")
    return render(request, "conversations/parts.html#edit_form", {"m": m})


@login_required
def attachment(request, attachment_id: int):
    """An answer's image, to the conversation's owner only (anyone else: 404)."""
    item = get_object_or_404(Attachment, pk=attachment_id, message__conversation__user=request.user)
    try:
        handle = item.file.open("rb")
    except FileNotFoundError:
        raise Http404("The file is gone.") from None
    response = FileResponse(handle, content_type=item.mime_type, filename=item.filename)
    response["Cache-Control"] = "private, max-age=86400"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


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
