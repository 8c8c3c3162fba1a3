import NIOCore

/// Counts the open connections of one listener for ``ServerMetrics``: one more while this handler
/// is in a channel's pipeline.
final class ConnectionCounter: ChannelInboundHandler, RemovableChannelHandler, Sendable {
    typealias InboundIn = NIOAny

    private let metrics: ServerMetrics
    private let transport: ServerMetrics.Transport

    init(metrics: ServerMetrics, transport: ServerMetrics.Transport) {
        self.metrics = metrics
        self.transport = transport
    }

    func handlerAdded(context: ChannelHandlerContext) {
        metrics.connectionOpened(transport)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        metrics.connectionClosed(transport)
    }
}
