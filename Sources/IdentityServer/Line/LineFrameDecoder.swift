import NIOCore

/// One frame of the line protocol.
enum LineFrame {
    /// A line without its `\n` or `\r\n`.
    case line(ByteBuffer)
    /// A line longer than the limit; nothing after it is read.
    case tooLong
}

/// Splits the byte stream at `\n` (a preceding `\r` is dropped too). A line over `maxLength`
/// bytes, counted without its line break, becomes one ``LineFrame/tooLong`` and everything after
/// it is discarded: the handler answers with an error and closes the connection.
struct LineFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = LineFrame

    let maxLength: Int
    /// Bytes at the front of the buffer already searched for `\n`, so each byte is looked at once.
    private var searched = 0
    private var discarding = false

    init(maxLength: Int) {
        self.maxLength = maxLength
    }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if discarding {
            buffer.moveReaderIndex(to: buffer.writerIndex)
            return .needMoreData
        }
        let view = buffer.readableBytesView
        guard let newline = view[(view.startIndex + searched)...].firstIndex(of: UInt8(ascii: "\n")) else {
            searched = view.count
            // A `\r` may still be the first half of the line break, so one byte more can wait.
            let pendingBreak = view.last == UInt8(ascii: "\r") ? 1 : 0
            if view.count > maxLength + pendingBreak { tooLong(context, &buffer) }
            return .needMoreData
        }
        searched = 0
        var line = buffer.readSlice(length: newline - view.startIndex)!
        buffer.moveReaderIndex(forwardBy: 1)
        if line.readableBytesView.last == UInt8(ascii: "\r") { line.moveWriterIndex(to: line.writerIndex - 1) }
        if line.readableBytes > maxLength {
            tooLong(context, &buffer)
            return .needMoreData
        }
        context.fireChannelRead(wrapInboundOut(.line(line)))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        // A last line without a line break still counts as a request.
        guard !discarding, buffer.readableBytes > 0 else { return .needMoreData }
        // `decode` lets one byte more than the limit wait, in case it is the `\r` of a `\r\n`; at the
        // end of input no `\n` follows, so that byte is part of the line and the limit holds.
        if buffer.readableBytes > maxLength {
            tooLong(context, &buffer)
        } else if let line = buffer.readSlice(length: buffer.readableBytes) {
            context.fireChannelRead(wrapInboundOut(.line(line)))
        }
        return .needMoreData
    }

    private mutating func tooLong(_ context: ChannelHandlerContext, _ buffer: inout ByteBuffer) {
        discarding = true
        buffer.moveReaderIndex(to: buffer.writerIndex)
        context.fireChannelRead(wrapInboundOut(.tooLong))
    }
}
