"""Headers for the responses of signed-in users."""

from __future__ import annotations

from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.utils.deprecation import MiddlewareMixin


class NoStoreWhenSignedIn(MiddlewareMixin):
    """A signed-in user's pages are never stored by any cache, the browser's included:
    after a logout on a shared computer, Back or the disk cache would show them again.
    A response that set its own Cache-Control keeps it (an answer's image is cached
    privately, for a day; the admin's pages are already never cached)."""

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and not response.has_header("Cache-Control"):
            response["Cache-Control"] = "no-store"
        return response
