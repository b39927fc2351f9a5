"""Cluster operations over the official kubernetes client: apply, wait, inventory, diagnosis, endpoint,
preflight and teardown. Every I/O function takes a :class:`Kube` (from :func:`connect`) first."""

from .apply import Cascade, apply, apply_all, delete, get, list_objects
from .client import Kube, ObjectRef, connect
