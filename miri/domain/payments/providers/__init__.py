"""Payment providers, one module each, chosen by ``MIRI_PAYMENT_PROVIDER``.

``simulated``: the original shop's simulated buyer (benchmarks, demos). ``checkout``: the
built-in test provider, a hosted checkout with signed webhooks as real providers run one. A real
provider's adapter is one more module here whose ``provider(context)`` returns a
``PaymentProvider`` (see ``payments/provider.py`` and the README's "Payments").
"""

from __future__ import annotations

import importlib
import re

from miri.config import SettingsError
from miri.domain.payments.provider import PaymentProvider, ProviderContext

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def load(name: str, context: ProviderContext) -> PaymentProvider:
    """The provider module ``name`` built for this shop."""
    if not _NAME.match(name):
        raise SettingsError(f"payment_provider: {name!r} is not a provider name")
    try:
        module = importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise  # the provider's own import failed: show that, not "unknown"
        raise SettingsError(
            f"payment_provider: no provider {name!r} (simulated or checkout)"
        ) from None
    return module.provider(context)
