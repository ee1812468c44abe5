"""spread: a fast, secure-by-default, wire-compatible successor to Twisted's Perspective Broker.

The public modules mirror ``twisted.spread`` one for one (``spread.banana``, ``spread.jelly``,
``spread.flavors``, ``spread.pb``, ...), so switching is a matter of changing imports.
"""

__version__ = "0.1.0"


def accelerated() -> bool:
    """Whether the optional C accelerator is in use (``spread --version`` says so too).

    False where it was not built (no C compiler at install time) or where the environment
    variable ``SPREAD_NO_SPEEDUPS`` is set; both paths give the same results.
    """
    from spread._native import speedups

    return speedups is not None
