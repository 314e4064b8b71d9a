"""HTTP calls to the app's backends, with failures turned into messages a page can show as they are."""

from __future__ import annotations

from typing import Any

import requests

from app.config import START_HINT


class BackendUnavailable(RuntimeError):
    """A backend did not answer at all (refused, timed out, name not found)."""

    def __init__(self, what: str, url: str, problem: str, hint: str = START_HINT):
        super().__init__(f"The {what} at {url} is unreachable ({problem}). To start it: {hint}.")
        self.what, self.url = what, url


class BackendError(RuntimeError):
    """A backend answered, but with an error; the message is the backend's own where it gave one."""


def call(session: requests.Session, what: str, method: str, url: str, *, timeout: float, hint: str = START_HINT,
         **kwargs: Any) -> requests.Response:
    """One request; unreachable -> BackendUnavailable (saying how to start it: `hint`), any 4xx/5xx ->
    BackendError with the backend's message."""
    try:
        response = session.request(method, url, timeout=timeout, **kwargs)
    except requests.Timeout:
        raise BackendUnavailable(what, url, f"no answer within {timeout:g} s", hint) from None
    except requests.ConnectionError as exc:
        raise BackendUnavailable(what, url, _reason(exc), hint) from None
    if not response.ok:
        raise BackendError(f"the {what} answered HTTP {response.status_code}: {error_message(response)}")
    return response


def error_message(response: requests.Response) -> str:
    """KServe's {"error": ...}, MLflow's {"message": ...}, else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason
    if isinstance(body, dict):
        return str(body.get("error") or body.get("message") or body.get("detail") or body)[:1000]
    return str(body)[:1000]


def _reason(exc: requests.ConnectionError) -> str:
    # requests nests urllib3's reason several levels deep; the innermost text is the useful one.
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "No route to host", "timed out"):
        if marker in text:
            return marker.lower()
    return text[:200]
