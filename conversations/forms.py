from django import forms
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm, UserCreationForm
from django.core.validators import MaxValueValidator
from django.forms.renderers import TemplatesSetting


class NoColonMixin:
    """Labels read "Password", not "Password:": screen readers and tests use the plain name."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)


class LoginForm(NoColonMixin, AuthenticationForm):
    pass


class SignupForm(NoColonMixin, UserCreationForm):
    pass


class RenameForm(NoColonMixin, forms.Form):
    title = forms.CharField(
        label="Title",
        max_length=200,
        error_messages={
            "required": "Give the conversation a title.",
            "max_length": "A title can be at most %(limit_value)d characters long (this one has %(show_value)d).",
        },
    )

    def clean_title(self):
        title = " ".join(self.cleaned_data["title"].split())
        if not title:
            raise forms.ValidationError("Give the conversation a title.")
        return title


class ConversationFormRenderer(TemplatesSetting):
    """Draws a form from templates/ (Django's widgets come from the "django.forms" app),
    each field with the field template there: label, input, hint and errors."""

    field_template_name = "conversations/forms/field.html"


class SettingsForm(NoColonMixin, forms.Form):
    """A conversation's settings, sent as `parameters`. Empty means "the model's own"."""

    default_renderer = ConversationFormRenderer
    template_name = "conversations/forms/settings.html"

    system_prompt = forms.CharField(
        label="System prompt",
        required=False,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Instructions the model follows in every answer of this conversation.",
    )
    temperature = forms.FloatField(
        label="Temperature",
        required=False,
        min_value=0,
        max_value=2,
        widget=forms.NumberInput(attrs={"step": "0.1", "inputmode": "decimal"}),
        help_text="0 to 2; lower is more predictable. Empty: the model's default.",
        error_messages={
            "invalid": "Temperature must be a number from 0 to 2, like 0.7.",
            "min_value": "Temperature must be from 0 to 2.",
            "max_value": "Temperature must be from 0 to 2.",
        },
    )
    max_output_tokens = forms.IntegerField(
        label="Maximum output tokens",
        required=False,
        min_value=1,
        widget=forms.NumberInput(attrs={"step": "1", "inputmode": "numeric"}),
        error_messages={
            "invalid": "Maximum output tokens must be a whole number, like 1024.",
            "min_value": "Maximum output tokens must be at least 1.",
        },
    )
    enable_thinking = forms.BooleanField(
        label="Enable thinking",
        required=False,
        initial=True,
        help_text="Thinking models reason before they answer; other models ignore this.",
    )

    FIELDS = ("system_prompt", "temperature", "max_output_tokens", "enable_thinking")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        limit = settings.MAX_OUTPUT_TOKENS
        field = self.fields["max_output_tokens"]
        assert isinstance(field, forms.IntegerField)
        field.max_value = limit
        field.validators.append(MaxValueValidator(limit, f"Maximum output tokens can be at most {limit:,}."))
        field.widget.attrs["max"] = limit
        field.help_text = f"1 to {limit:,}. Empty: the model's default."

    def clean_system_prompt(self):
        text = self.cleaned_data["system_prompt"]
        if len(text) > settings.MAX_MESSAGE_CHARS:
            raise forms.ValidationError(
                f"The system prompt is {len(text):,} characters long; the limit is {settings.MAX_MESSAGE_CHARS:,}."
            )
        return text

    @classmethod
    def for_conversation(cls, conversation):
        return cls(initial={name: getattr(conversation, name) for name in cls.FIELDS})

    def error_text(self) -> str:
        """All the errors in one sentence (for the chat's error line)."""
        return " ".join(str(error) for errors in self.errors.values() for error in errors)
