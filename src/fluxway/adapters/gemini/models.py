"""Gemini model names: the resource name in a request body, and the checked URL path."""

from __future__ import annotations

from fluxway.adapters.names import invalid_model, path_segment, segments_path


def model_resource(model: str) -> str:
    """The model's resource name as sent in the request body (unencoded)."""
    return model if "/" in model else "models/" + model


_RESOURCE_ROOTS = frozenset({"models", "tunedModels"})


def model_url_path(model: str) -> str:
    """The model's resource name as a checked, percent-encoded URL path.

    ``gemini-1.5-flash`` -> ``models/gemini-1.5-flash``; ``models/x`` and ``tunedModels/x`` as they
    are; a Vertex-style ``projects/p/locations/l/publishers/google/models/m`` (pairs of segments).
    Anything else with a ``/`` is refused (400 ``invalid_model``), as are ``..``, ``?``, ``#``,
    whitespace and control characters (see :mod:`fluxway.adapters.names`).
    """
    if "/" not in model:
        return "models/" + path_segment(model)
    path = segments_path(model)
    segments = model.split("/")
    if (len(segments) == 2 and segments[0] in _RESOURCE_ROOTS) or (
        segments[0] == "projects" and len(segments) % 2 == 0
    ):
        return path
    raise invalid_model(model, "gemini model names are 'name', 'models/name', 'tunedModels/name' or a "
                               "'projects/...' resource name")
