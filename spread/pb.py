"""Perspective Broker: call objects in another process (``twisted.spread.pb``, same names).

A server publishes a root object::

    class Echo(pb.Root):
        def remote_echo(self, value):
            return value

    endpoint.listen(pb.PBServerFactory(Echo()))

and a client calls it::

    factory = pb.PBClientFactory()
    await endpoint.connect(factory)
    root = await factory.getRootObject()
    print(await root.callRemote("echo", "hello"))

``Referenceable`` objects travel by reference, ``Copyable`` ones by value,
``Cacheable`` ones as live replicas. The wire is Twisted's PB: either end may
be ``twisted.spread``. The connection's ``SecurityOptions`` (``security=``)
decide which classes may arrive; by default only basic types and classes
registered with ``setUnjellyableForClass``.
"""

from __future__ import annotations

# twisted.cred's names that Twisted's pb module exposes too, so code reading them
# from pb keeps working after the import swap.
from twisted.cred.credentials import (
    Anonymous,
    IAnonymous,
    ICredentials,
    IUsernameHashedPassword,
)
from twisted.cred.portal import Portal

from spread._broker import MAX_BROKER_REFS, Local
from spread._credentials import IUsernameMD5Password, challenge, respond
from spread._errors import DeadReferenceError, Error, PBConnectionLost, ProtocolError, RemoteError
from spread._factories import PBClientFactory, PBServerFactory
from spread._failures import CopiedFailure, CopyableFailure, failure2Copyable
from spread._perspective import AsReferenceable, Avatar, IPerspective
from spread._protocol import Broker
from spread._remote import RemoteMethod, RemoteReference
from spread.flavors import (
    Cacheable,
    Copyable,
    IPBRoot,
    Jellyable,
    NoSuchMethod,
    Referenceable,
    RemoteCache,
    RemoteCacheObserver,
    RemoteCopy,
    Root,
    Serializable,
    Viewable,
    ViewPoint,
    broadcast,
    copyTags,
    setCopierForClass,
    setCopierForClassTree,
    setFactoryForClass,
    setUnjellyableFactoryForClass,
    setUnjellyableForClass,
    setUnjellyableForClassTree,
)
from spread.interfaces import IJellyable, IUnjellyable
from spread.jelly import globalSecurity, jelly, unjelly
from spread.limits import Limits

portno = 8787
"""The port PB examples traditionally use."""


__all__ = [
    "MAX_BROKER_REFS",
    "Anonymous",
    "AsReferenceable",
    "Avatar",
    "Broker",
    "Cacheable",
    "CopiedFailure",
    "Copyable",
    "CopyableFailure",
    "DeadReferenceError",
    "Error",
    "IAnonymous",
    "ICredentials",
    "IJellyable",
    "IPBRoot",
    "IPerspective",
    "IUnjellyable",
    "IUsernameHashedPassword",
    "IUsernameMD5Password",
    "Jellyable",
    "Limits",
    "Local",
    "NoSuchMethod",
    "PBClientFactory",
    "PBConnectionLost",
    "PBServerFactory",
    "Portal",
    "ProtocolError",
    "Referenceable",
    "RemoteCache",
    "RemoteCacheObserver",
    "RemoteCopy",
    "RemoteError",
    "RemoteMethod",
    "RemoteReference",
    "Root",
    "Serializable",
    "ViewPoint",
    "Viewable",
    "broadcast",
    "challenge",
    "copyTags",
    "failure2Copyable",
    "globalSecurity",
    "jelly",
    "portno",
    "respond",
    "setCopierForClass",
    "setCopierForClassTree",
    "setFactoryForClass",
    "setUnjellyableFactoryForClass",
    "setUnjellyableForClass",
    "setUnjellyableForClassTree",
    "unjelly",
]
