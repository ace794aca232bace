import gc
import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
application = get_wsgi_application()

# Import every view now rather than on each worker's first request, then take everything loaded so far
# out of the cyclic garbage collector's scans: a full collection otherwise walks every module-level
# object (about 120k, 50-60 ms on the 2-core VM, a pause for every request that worker holds). Under
# `gunicorn --preload` the workers also share these pages copy-on-write. Objects that requests create
# are collected as usual.
_ = get_resolver().url_patterns
# The answer path's stopping rule (judgments.stopping) imports it on first use: scipy, 0.25 s of CPU that
# a worker's first adaptive answer or first HIT submitted would otherwise wait for.
import metric.sampling  # noqa: E402, F401

gc.freeze()
