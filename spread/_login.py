"""Logging in over PB: a twisted.cred portal as the root object, and the client side of it.

What both peers say, the same way Twisted PB does, so either side may be Twisted:

    root.login(username)                  -> (challenge, challenger reference)
    challenger.respond(response, mind)    -> reference to the avatar
    root.loginAnonymous(mind)             -> reference to the avatar

The response is MD5(MD5(password) + challenge): it proves the client knows the password
without the password, or anything replayable, crossing the wire. MD5 is what the PB wire fixes;
it is no substitute for TLS against an eavesdropper who can guess passwords offline, which is
why the how-to (docs/howto-auth.md) pairs login with a TLS endpoint.

The server side is reached through ``PBServerFactory(portal)``: a zope adapter turns the portal
into an ``IPBRoot`` that gives every connection its own login desk.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any, Protocol

from twisted.cred.credentials import (
    Anonymous,
    IAnonymous,
    IUsernameHashedPassword,
)
from twisted.cred.error import LoginFailed, UnauthorizedLogin
from twisted.cred.portal import Portal
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.components import registerAdapter
from zope.interface import implementer  # type: ignore[import-untyped]

from spread._credentials import CHALLENGE_SIZE, IUsernameMD5Password, _md5, challenge, respond
from spread._perspective import AsReferenceable, IPerspective
from spread._protocol import Broker
from spread._quote import quote
from spread._remote import RemoteReference
from spread.flavors import IPBRoot, Referenceable
from spread.interfaces import IJellyable

__all__ = [
    "CHALLENGE_SIZE",
    "MAX_UNANSWERED_CHALLENGES",
    "IUsernameMD5Password",
    "PortalRoot",
    "challenge",
    "login",
    "respond",
]

_log = Logger()

# A client that asks for this many challenges on one connection without answering any is not
# logging in, it is filling our memory; a real client answers each one at once.
MAX_UNANSWERED_CHALLENGES = 32

# --------------------------------------------------------------------------------------------
# Server side


@implementer(IPBRoot)
class PortalRoot:
    """The root of a login server: each connection gets a fresh desk in front of the portal."""

    def __init__(self, portal: Portal) -> None:
        self.portal = portal

    def rootObject(self, broker: Broker) -> Referenceable:
        return _LoginDesk(self.portal, broker)


registerAdapter(PortalRoot, Portal, IPBRoot)  # type: ignore[no-untyped-call]


class _LoginDesk(Referenceable):
    """What a client reaches as ``root`` on a login server: it can only ask to log in."""

    def __init__(self, portal: Portal, broker: Broker) -> None:
        self.portal = portal
        self.broker = broker
        self.unanswered = 0
        awaitLogin = getattr(broker, "awaitLogin", None)  # a bare PBSession has no timers
        if awaitLogin is not None:
            awaitLogin()

    def remote_login(self, username: object) -> tuple[bytes, _Challenger]:
        """Start a password login: hand out a challenge and the object that takes the answer."""
        if not isinstance(username, (bytes, str)):
            raise UnauthorizedLogin(
                f"a username must be bytes or str, not {type(username).__name__}"
            )
        if self.unanswered >= MAX_UNANSWERED_CHALLENGES:
            raise LoginFailed(
                f"{self.unanswered} login challenges on this connection are still unanswered; "
                "answer them (challenger.respond) before asking for more"
            )
        self.unanswered += 1
        nonce = challenge()
        return nonce, _Challenger(self, username, nonce)

    def remote_loginAnonymous(self, mind: object) -> defer.Deferred[Referenceable]:
        """Log in without a password, if the portal has a checker for ``Anonymous``."""
        return self.enter(Anonymous(), mind)

    def enter(self, credentials: Any, mind: object) -> defer.Deferred[Referenceable]:
        """Ask the portal for an avatar and publish it on this connection.

        ``credentials`` provides a cred interface; zope providers are not subclasses of it,
        hence ``Any``.
        """
        attempt = self.portal.login(credentials, mind, IPerspective)
        return attempt.addCallback(self._publish)

    def _publish(self, login: tuple[Any, object, Callable[[], None]]) -> Referenceable:
        _interface, avatar, logout = login
        session = _Session(self.broker, logout)
        if self.broker.disconnected:
            # The client left while the checker was thinking: nobody will ever use this avatar.
            session.end()
            raise LoginFailed("the connection closed before login finished")
        try:
            reference = _as_referenceable(avatar)
        except Exception:
            session.end()
            raise
        session.watch(reference)
        loggedIn = getattr(self.broker, "loggedIn", None)
        if loggedIn is not None:
            loggedIn()
        return reference


def _as_referenceable(avatar: object) -> Referenceable:
    """What travels for an avatar: the avatar itself if it knows how to travel (say, a
    ``Referenceable``), else a reference that sends each call to its ``perspective_*`` methods
    (the usual ``pb.Avatar`` case)."""
    if IJellyable.providedBy(avatar):
        return avatar  # type: ignore[return-value]
    if not callable(getattr(avatar, "perspectiveMessageReceived", None)):
        raise TypeError(
            f"the realm returned {quote(avatar)} as the avatar, which PB cannot send: "
            "return a pb.Avatar subclass (calls go to its perspective_* methods) "
            "or a pb.Referenceable"
        )
    return AsReferenceable(avatar, "perspective")


class _Session:
    """One logged-in avatar on one connection: its logout runs once, whichever end comes first
    (the client releasing the avatar, or the connection closing)."""

    def __init__(self, broker: Broker, logout: Callable[[], None]) -> None:
        self.broker = broker
        self.logout: Callable[[], None] | None = logout

    def watch(self, reference: Referenceable) -> None:
        self.broker.notifyOnDisconnect(self.end)
        self.broker.notifyOnRelease(reference, self._released)

    def _released(self) -> None:
        self.broker.dontNotifyOnDisconnect(self.end)
        self.end()

    def end(self) -> None:
        logout, self.logout = self.logout, None
        if logout is None:
            return
        try:
            logout()
        except Exception:
            _log.failure("the realm's logout for an avatar raised")


@implementer(IUsernameHashedPassword, IUsernameMD5Password)
class _Challenger(Referenceable):
    """Takes the answer to one challenge and plays the credentials the portal's checker sees.

    It works once: a second answer is refused, so a client cannot try password after password
    against the same challenge; it must ask for a new one.
    """

    def __init__(self, desk: _LoginDesk, username: bytes | str, nonce: bytes) -> None:
        self.desk: _LoginDesk | None = desk
        self.username = username
        self.challenge = nonce
        self.response = b""

    def remote_respond(self, response: object, mind: object) -> defer.Deferred[Referenceable]:
        desk, self.desk = self.desk, None
        if desk is None:
            raise UnauthorizedLogin("this challenge was already answered; call login again")
        desk.unanswered -= 1
        if not isinstance(response, bytes):
            raise UnauthorizedLogin(f"a response must be bytes, not {type(response).__name__}")
        self.response = response
        return desk.enter(self, mind)

    def checkPassword(self, password: bytes | str) -> bool:
        return self._matches(respond(self.challenge, password))

    def checkMD5Password(self, password: bytes) -> bool:
        return self._matches(_md5(password + self.challenge))

    def _matches(self, expected: bytes) -> bool:
        return hmac.compare_digest(expected, self.response)


# --------------------------------------------------------------------------------------------
# Client side


class _HasRoot(Protocol):
    def getRootObject(self) -> defer.Deferred[RemoteReference]: ...


def login(
    source: _HasRoot | RemoteReference, credentials: object, client: object = None
) -> defer.Deferred[RemoteReference]:
    """Log in to a PB server and fire with a reference to the avatar.

    ``source`` is a ``PBClientFactory`` (connected or not yet) or the server's root reference.
    ``credentials`` is ``Anonymous()`` or anything with ``username`` and ``password``, such as
    ``UsernamePassword``; the password itself never leaves this process. ``client`` is the mind:
    a ``Referenceable`` the server may call back, or None. A refused login fails with the
    server's copied failure, so ``failure.check("twisted.cred.error.UnauthorizedLogin")`` works.
    """
    # Plain callback chains rather than a coroutine: awaiting would turn the server's copied
    # failure into a local exception and lose its remote type on the way out.
    if IAnonymous.providedBy(credentials):
        return _root_of(source).addCallback(lambda root: root.callRemote("loginAnonymous", client))
    username = getattr(credentials, "username", None)
    password = getattr(credentials, "password", None)
    if username is None or password is None:
        return defer.fail(
            TypeError(
                f"PB login takes Anonymous() or credentials with a username and a password "
                f"(such as UsernamePassword), not {type(credentials).__name__}"
            )
        )
    offered = _root_of(source).addCallback(lambda root: root.callRemote("login", username))
    return offered.addCallback(_answer_challenge, password, client)


def _root_of(source: _HasRoot | RemoteReference) -> defer.Deferred[RemoteReference]:
    if isinstance(source, RemoteReference):
        return defer.succeed(source)
    return source.getRootObject()


def _answer_challenge(
    offer: object, password: bytes | str, client: object
) -> defer.Deferred[RemoteReference]:
    nonce, challenger = _read_challenge(offer)
    return challenger.callRemote("respond", respond(nonce, password), client)


def _read_challenge(offer: object) -> tuple[bytes, RemoteReference]:
    """Check the server's answer to ``login`` has the shape every PB server gives it."""
    if (
        isinstance(offer, (tuple, list))
        and len(offer) == 2
        and isinstance(offer[0], bytes)
        and hasattr(offer[1], "callRemote")
    ):
        return offer[0], offer[1]
    raise LoginFailed(
        f"the server answered login with {quote(offer)}, not a (challenge, challenger) pair; "
        "is it a PB login server (PBServerFactory(portal))?"
    )
