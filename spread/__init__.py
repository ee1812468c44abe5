"""spread: a fast, secure-by-default, wire-compatible successor to Twisted's Perspective Broker.

The public modules mirror ``twisted.spread`` one for one (``spread.banana``, ``spread.jelly``,
``spread.flavors``, ``spread.pb``, ...), so switching is a matter of changing imports.
"""

__version__ = "0.1.0"
