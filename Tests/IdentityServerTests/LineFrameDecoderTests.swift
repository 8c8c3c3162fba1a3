import NIOCore
import NIOEmbedded
import NIOTestUtils
import Testing

@testable import IdentityServer

/// The line framing of SPEC.md section 7 on its own: `LineFrameDecoder` behind a `ByteToMessageHandler`, fed
/// whole, byte by byte and all at once by NIO's `ByteToMessageDecoderVerifier`.
@Suite struct LineFrameDecoderTests {
    /// A small limit keeps the verifier's byte-by-byte feeding quick; the limit's edges are the same at any size.
    static let maxLength = 16

    private func line(_ text: String) -> LineFrame {
        .line(ByteBuffer(string: text))
    }

    private func verify(_ pairs: [(String, [LineFrame])], maxLength: Int = Self.maxLength) throws {
        try ByteToMessageDecoderVerifier.verifyDecoder(stringInputOutputPairs: pairs) {
            LineFrameDecoder(maxLength: maxLength)
        }
    }

    /// A channel with only the decoder, so that the frames it emits can be read back with `readInbound`.
    private func decoderChannel(maxLength: Int = Self.maxLength) -> EmbeddedChannel {
        EmbeddedChannel(handler: ByteToMessageHandler(LineFrameDecoder(maxLength: maxLength)))
    }

    private func frames(_ channel: EmbeddedChannel) throws -> [LineFrame] {
        var frames: [LineFrame] = []
        while let frame = try channel.readInbound(as: LineFrame.self) { frames.append(frame) }
        return frames
    }

    @Test("a line ends at \\n or at \\r\\n, and the line break is not part of it")
    func lineBreaks() throws {
        try verify([
            (#"{"op":"ping"}"# + "\n", [line(#"{"op":"ping"}"#)]),
            (#"{"id":1}"# + "\r\n", [line(#"{"id":1}"#)]),
        ])
    }

    @Test("several lines in one buffer become one frame each, in order")
    func severalLinesInOneBuffer() throws {
        try verify([
            ("a\nbb\r\nccc\n", [line("a"), line("bb"), line("ccc")]),
            ("x\r\ny\n", [line("x"), line("y")]),
        ])
    }

    @Test("a line split across reads is one frame once its line break arrives")
    func lineSplitAcrossReads() throws {
        let channel = decoderChannel(maxLength: 64)
        try channel.writeInbound(ByteBuffer(string: #"{"email":"#))
        try channel.writeInbound(ByteBuffer(string: #""a@x.io"}"#))
        try channel.writeInbound(ByteBuffer(string: "\r"))
        #expect(try frames(channel).isEmpty)
        try channel.writeInbound(ByteBuffer(string: "\nnext"))
        #expect(try frames(channel) == [line(#"{"email":"a@x.io"}"#)])
        try channel.writeInbound(ByteBuffer(string: "\n"))
        #expect(try frames(channel) == [line("next")])
        #expect(try channel.finish().isClean)
    }

    @Test("a line of exactly the maximum length is a line, with either line break")
    func lineOfMaximumLength() throws {
        let longest = String(repeating: "m", count: Self.maxLength)
        try verify([
            (longest + "\n", [line(longest)]),
            (longest + "\r\n", [line(longest)]),
        ])
    }

    @Test("a \\r inside a line is kept; only the one before \\n is dropped")
    func carriageReturnInsideLine() throws {
        try verify([
            ("a\rb\n", [line("a\rb")]),
            ("c\r\r\n", [line("c\r")]),
        ])
    }

    @Test("blank lines are frames of their own, empty, for the handler to skip")
    func blankLines() throws {
        try verify([
            ("\n", [line("")]),
            ("\r\n", [line("")]),
            ("  \n", [line("  ")]),
        ])
    }

    @Test("a line one byte over the limit is tooLong, whether or not its line break has arrived")
    func oneByteOverTheLimit() throws {
        let over = String(repeating: "o", count: Self.maxLength + 1)
        for input in [over + "\n", over + "\r\n", over] {
            let channel = decoderChannel()
            try channel.writeInbound(ByteBuffer(string: input))
            #expect(try frames(channel) == [.tooLong], "\(input.debugDescription)")
            #expect(try channel.finish().isClean)
        }
    }

    @Test("a line over the limit is tooLong as soon as the limit is passed, fed byte by byte")
    func tooLongWhileDripFed() throws {
        let channel = decoderChannel()
        for _ in 0..<Self.maxLength {
            try channel.writeInbound(ByteBuffer(string: "d"))
        }
        #expect(try frames(channel).isEmpty)
        try channel.writeInbound(ByteBuffer(string: "\r"))
        #expect(try frames(channel).isEmpty, "a \\r at the limit may still be the first half of the line break")
        try channel.writeInbound(ByteBuffer(string: "d"))
        #expect(try frames(channel) == [.tooLong])
        #expect(try channel.finish().isClean)
    }

    @Test("after tooLong, every later byte is discarded, lines and end of input included")
    func nothingAfterTooLong() throws {
        let channel = decoderChannel()
        let over = String(repeating: "o", count: Self.maxLength + 1)
        try channel.writeInbound(ByteBuffer(string: "before\n" + over + "\nafter\n"))
        #expect(try frames(channel) == [line("before"), .tooLong])
        try channel.writeInbound(ByteBuffer(string: "later\npartial"))
        channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(try frames(channel).isEmpty)
        #expect(try channel.finish().isClean)
    }

    @Test("the default limit of 65,536 bytes: 65,536 is a line, 65,537 is tooLong")
    func defaultLimit() throws {
        let limit = ServerConfiguration().maxLineBytes
        #expect(limit == 65_536)
        let channel = decoderChannel(maxLength: limit)
        let longest = String(repeating: "z", count: limit)
        try channel.writeInbound(ByteBuffer(string: longest + "\r\n" + longest + "z\n"))
        #expect(try frames(channel) == [line(longest), .tooLong])
        #expect(try channel.finish().isClean)
    }

    @Test("at end of input, a last line without a line break is a line")
    func lastLineWithoutLineBreak() throws {
        let channel = decoderChannel()
        try channel.writeInbound(ByteBuffer(string: "first\n" + #"{"op":"ping"}"#))
        #expect(try frames(channel) == [line("first")])
        channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(try frames(channel) == [line(#"{"op":"ping"}"#)])
        #expect(try channel.finish().isClean)
    }

    @Test("at end of input, a last line of the limit plus a lone \\r is tooLong: no \\n follows to make it a break")
    func lastLineOverTheLimitByItsCarriageReturn() throws {
        let channel = decoderChannel()
        try channel.writeInbound(ByteBuffer(string: String(repeating: "x", count: Self.maxLength) + "\r"))
        #expect(try frames(channel).isEmpty)
        channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(try frames(channel) == [.tooLong])
        #expect(try channel.finish().isClean)
    }

    @Test("at end of input right after a line break, there is no extra empty line")
    func endOfInputAfterLineBreak() throws {
        let channel = decoderChannel()
        try channel.writeInbound(ByteBuffer(string: "only\n"))
        channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(try frames(channel) == [line("only")])
        #expect(try channel.finish().isClean)
    }
}

/// The verifier compares frames; only the tests need to, so the conformance lives here, not in Sources.
extension LineFrame: Equatable {
    public static func == (lhs: LineFrame, rhs: LineFrame) -> Bool {
        switch (lhs, rhs) {
        case (.line(let left), .line(let right)): left == right
        case (.tooLong, .tooLong): true
        default: false
        }
    }
}

extension EmbeddedChannel.LeftOverState {
    /// Whether the channel was left with nothing unread and nothing unwritten.
    var isClean: Bool {
        if case .clean = self { return true }
        return false
    }
}
