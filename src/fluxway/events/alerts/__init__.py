"""Anomaly alerts: rules over sliding windows of calls and the gateway's state, plus learned
baselines, evaluated in the background; fired and resolved once, with cool-down, through the
event sinks; state and history in the store (docs/alerts.md).

``settings`` (the config models) imports nothing heavy; ``engine``, ``store`` and ``build`` are
loaded only when a config has ``alerts``.
"""
