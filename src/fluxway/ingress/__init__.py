"""Ingress shapes: a caller's wire format <-> the canonical request, response and stream."""
