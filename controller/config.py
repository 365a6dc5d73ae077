"""The controller's view of the operator's config file: what every selected namespace holds.

The same file, parsed by the same code, as the webhook's (``webhook.settings``), so the
ConfigMap name, the ports and the excluded namespaces can never disagree with what is injected.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml

from webhook import bootstrap, reconcile, settings


def target_from_config(text: str | None, *, own_namespace: str) -> reconcile.Target:
    """The Target for the config file's text (None: the built-in defaults)."""
    context = settings.context_from_config(text, own_namespace=own_namespace)
    doc = (yaml.safe_load(text) if text else None) or {}  # valid: checked just above
    source = bootstrap.template(doc.get("bootstrap"))
    return reconcile.target(context.defaults, source, excluded=context.excluded_namespaces)


def read(path: Path | None) -> tuple[str | None, str]:
    """The file's text and a digest of it, to notice changes cheaply (no file events on a
    mounted ConfigMap, which the kubelet swaps through a symlink)."""
    if path is None:
        return None, ""
    text = path.read_text(encoding="utf-8")
    return text, hashlib.sha256(text.encode()).hexdigest()
