"""The forms that take a gateway key: its value is cleaned by the vault, never echoed."""

from __future__ import annotations

from django import forms

from conversations.forms import NoColonMixin
from conversations.keys import vault


class ApiKeyForm(NoColonMixin, forms.Form):
    """Adds a key. The value field never renders what was typed back into the page."""

    label = forms.CharField(label="Label", max_length=100)
    value = forms.CharField(label="API key", widget=forms.PasswordInput(render_value=False), strip=False)

    def __init__(self, user, *args, **kwargs):
        self.user = user
        super().__init__(*args, **kwargs)

    def clean_label(self):
        label = self.cleaned_data["label"].strip()
        if not label:
            raise forms.ValidationError("Give the key a label.")
        if self.user.api_keys.filter(label=label).exists():
            raise forms.ValidationError("You already have a key with this label.")
        return label

    def clean_value(self):
        return vault.clean_value(self.cleaned_data["value"])


class ReplaceApiKeyForm(NoColonMixin, forms.Form):
    value = forms.CharField(label="New value", widget=forms.PasswordInput(render_value=False), strip=False)

    def clean_value(self):
        return vault.clean_value(self.cleaned_data["value"])
