"""The code the reload example changes while it runs. See docs/upgrading.md.

examples/reload_server.py serves one Greeter from this module. Edit this file while the server
runs, and an administrator's ``reload`` call makes the live Greeter, and every client's
reference to it, run the new code, without a restart or a reconnect.
"""

from __future__ import annotations

from types import ModuleType

from spread import pb


class Greeter(pb.Referenceable):
    """Counts greetings, so a reload visibly keeps the object's state."""

    def __init__(self) -> None:
        self.calls = 0

    def remote_greet(self, name: str) -> str:
        self.calls += 1
        return f"hello, {name} (call {self.calls})"


def __rebuild__(old_module: ModuleType, new_module: ModuleType) -> None:  # noqa: N807
    """Runs after the new source, before live objects move to it: carry state over here."""
    print(f"migrating {old_module.__name__} to its new code", flush=True)
