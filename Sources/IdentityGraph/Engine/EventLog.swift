/// The change feed of an engine without a store: events in their stored form (``ChangeEvent``'s
/// encoding), back to back in one buffer, so recording one costs no allocation of its own. Keeps
/// the newest `retained`; older ones are dropped, and the buffer is compacted once half of it is
/// dropped events.
struct EventLog {
    private var bytes: [UInt8] = []
    /// Where each kept event starts in `bytes`; the event after the last ends at `bytes.count`.
    private var starts: [Int] = []
    /// How many entries at the front of `starts` are dropped.
    private var dropped = 0
    /// The seq of `starts[0]`.
    private var firstSeq: UInt64 = 1
    let retained: Int

    init(retained: Int) {
        self.retained = max(retained, 1)
    }

    /// The oldest kept seq, 0 when there is none.
    var oldestSeq: UInt64 { starts.count > dropped ? firstSeq + UInt64(dropped) : 0 }

    /// Appends the event numbered `seq` (the next one), which `encode` writes in stored form.
    mutating func append(seq: UInt64, _ encode: (inout [UInt8]) -> Void) {
        if starts.isEmpty { firstSeq = seq }
        starts.append(bytes.count)
        encode(&bytes)
        if starts.count - dropped > retained { dropped += 1 }
        if dropped > 1024 && dropped * 2 > starts.count { compact() }
    }

    /// The kept events after `after`, at most `limit`, ascending.
    func events(after: UInt64, limit: Int) -> [ChangeEvent] {
        var result: [ChangeEvent] = []
        var index = max(dropped, after >= firstSeq ? Int(after - firstSeq) + 1 : 0)
        while index < starts.count && result.count < limit {
            let end = index + 1 < starts.count ? starts[index + 1] : bytes.count
            let seq = firstSeq + UInt64(index)
            let event = bytes.withUnsafeBytes { ChangeEvent(seq: seq, stored: UnsafeRawBufferPointer(rebasing: $0[starts[index]..<end])) }
            if let event { result.append(event) }
            index += 1
        }
        return result
    }

    private mutating func compact() {
        let cut = starts[dropped]
        bytes.removeFirst(cut)
        starts = starts[dropped...].map { $0 - cut }
        firstSeq += UInt64(dropped)
        dropped = 0
    }
}
