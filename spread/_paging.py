"""The broker as a pull producer for ``spread.util.Pager``: pages go out as the transport drains."""

from __future__ import annotations

from typing import Any

from spread._lazy import perConnection


class PagingMixin:
    """Lets pagers send one page each time the transport asks for more data."""

    transport: Any

    @perConnection
    def pageProducers(self) -> list[Any]:
        """The pagers still sending (made on first use, see ``spread._lazy``)."""
        return []

    def registerPageProducer(self, pager: Any) -> None:
        """Start feeding ``pager``'s pages to the peer as the transport has room."""
        self.pageProducers.append(pager)
        if len(self.pageProducers) == 1:
            self._pagingStarts()
            self.transport.registerProducer(self, False)

    def resumeProducing(self) -> None:
        """The transport has room: each pager sends one page; finished pagers leave."""
        for pager in list(self.pageProducers):
            pager.sendNextPage()
            if not pager.stillPaging():
                self.pageProducers.remove(pager)
        if not self.pageProducers:
            self.transport.unregisterProducer()
            self._pagingEnded()

    def pauseProducing(self) -> None:
        """Nothing to do: we only send when asked (a pull producer)."""

    def stopProducing(self) -> None:
        """The transport is going away; ``stopPaging`` runs on connection loss."""

    def _pagingStarts(self) -> None:
        """Hook: the transport's one producer slot is about to be taken by paging."""

    def _pagingEnded(self) -> None:
        """Hook: paging gave the transport's producer slot back."""

    def stopPaging(self) -> None:
        """Forget every pager (the connection is gone)."""
        self.__dict__.pop("pageProducers", None)
