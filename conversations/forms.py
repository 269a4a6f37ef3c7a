from django.contrib.auth.forms import AuthenticationForm, UserCreationForm


class NoColonMixin:
    """Labels read "Password", not "Password:": screen readers and tests use the plain name."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)


class LoginForm(NoColonMixin, AuthenticationForm):
    pass


class SignupForm(NoColonMixin, UserCreationForm):
    pass
