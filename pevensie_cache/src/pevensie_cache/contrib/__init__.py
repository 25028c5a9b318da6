"""Framework integrations: backends for Django, Flask-Caching and dogpile.cache.

Each lives in its own module and imports its framework only when that module
is imported (the framework names it in its settings):

- ``pevensie_cache.contrib.django.PevensieCache``: a Django cache backend
  (``pip install "pevensie-cache[django]"``);
- ``pevensie_cache.contrib.flask.PevensieCache``: a Flask-Caching ``CACHE_TYPE``
  (``pip install "pevensie-cache[flask]"``);
- ``pevensie_cache.contrib.dogpile.PevensieBackend``: a dogpile.cache backend,
  registered as ``"pevensie"`` (``pip install "pevensie-cache[dogpile]"``).

Backends configured with the same URL and driver options share one connected
cache per process (:mod:`pevensie_cache.contrib.shared`).
"""
