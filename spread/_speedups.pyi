from typing import Any

def encode(
    obj: object, symbols: dict[bytes, bytes], size_limit: int, prefix_limit: int, max_depth: int
) -> bytes | None: ...
def scan(
    buf: bytes | bytearray, end: int, stack: list[tuple[list[object], int]],
    symbols: tuple[bytes | None, ...] | None, size_limit: int, prefix_limit: int, max_depth: int,
    max_size: int, list_allowance: int, partial: int, lists: int,
) -> tuple[int, int, int, int, int, Any, Any] | None: ...
def unjelly(sexp: object, allowed: Any, max_depth: int) -> Any: ...
