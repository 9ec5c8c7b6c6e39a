"""The in-image validation suite ("the probe").

Needs only the standard library and torch, and imports without torch. Inside an image it runs as the
top-level package ``envkit_probe`` (``python -m envkit_probe``); on a host as ``python -m envkit.probe``.
Only relative imports are used inside this package so both names work.
"""

PROBE_VERSION = "1"
