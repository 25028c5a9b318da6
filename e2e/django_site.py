"""The Django app (run by gunicorn's gevent worker): ``/items/<n>`` through Django's cache API.

Django's cache is Pevensie's backend (``pevensie_cache.contrib.django``) on
Redis (``E2E_REDIS_URL``): ``cache.get_or_set`` is the cache-aside read.
Settings are configured here, so ``django_site:application`` is the whole site.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import django
from catalogue import TTL, build_item
from django.conf import settings

settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    SECRET_KEY="e2e-throwaway-not-a-secret",
    INSTALLED_APPS=[],
    MIDDLEWARE=[],
    CACHES={
        "default": {
            "BACKEND": "pevensie_cache.contrib.django.PevensieCache",
            "LOCATION": os.environ["E2E_REDIS_URL"],
            "OPTIONS": {"resource_type": "e2e-django"},
        }
    },
)
django.setup()

from django.core.cache import cache as django_cache  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpRequest, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402


def read_item(request: HttpRequest, n: int) -> JsonResponse:
    item: dict[str, Any] = django_cache.get_or_set(f"item:{n}", lambda: build_item(n), TTL)
    return JsonResponse(item)


def health(request: HttpRequest) -> JsonResponse:
    """Answer once the cache works; say whether gevent patched the sockets (it must have)."""
    django_cache.set("health", "ok", 10)
    patched = "gevent" if socket.socket.__module__.startswith("gevent") else "threads"
    return JsonResponse({"status": django_cache.get("health"), "runtime": patched})


urlpatterns = [path("items/<int:n>", read_item), path("health", health)]
application = get_wsgi_application()
