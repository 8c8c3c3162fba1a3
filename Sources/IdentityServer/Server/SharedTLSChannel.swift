import HummingbirdCore
import Logging
import NIOCore
import NIOSSL

/// An HTTP child channel behind TLS with a context built once for the whole server and shared with
/// the line-protocol listener. (HummingbirdTLS's `TLSChannel` builds a context of its own from a
/// configuration: a second copy of the certificate chain and key, parsed and checked again.)
struct SharedTLSChannel<Base: HTTPChannelHandler>: HTTPChannelHandler {
    typealias Value = Base.Value

    let base: Base
    let context: NIOSSLContext

    var responder: Responder { base.responder }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context))
        }.flatMap {
            base.setup(channel: channel, logger: logger)
        }
    }

    func handle(value: Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}
