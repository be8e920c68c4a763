"""Every module here exports ``PROFILE``; adding a provider to the suite is adding one module."""

from __future__ import annotations

import importlib
import pkgutil

from tests.conformance.profile import Profile


def load() -> list[Profile]:
    profiles = []
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        profile = getattr(module, "PROFILE", None)
        if not isinstance(profile, Profile):
            raise TypeError(f"{module.__name__} must export PROFILE = Profile(...)")
        profiles.append(profile)
    return sorted(profiles, key=lambda p: p.name)
