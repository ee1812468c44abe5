"""The README's example: a PB server and a client in one process, talking over TCP."""

from twisted.internet import defer, endpoints, task

from spread import pb


class Echoer(pb.Root):
    def remote_echo(self, value):
        return value


async def main(reactor):
    server = endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
    port = await server.listen(pb.PBServerFactory(Echoer()))
    factory = pb.PBClientFactory()
    reactor.connectTCP("127.0.0.1", port.getHost().port, factory)
    root = await factory.getRootObject()
    print(await root.callRemote("echo", "hello, world"))
    factory.disconnect()


task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
