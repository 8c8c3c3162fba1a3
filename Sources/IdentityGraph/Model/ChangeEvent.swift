/// One entry of the change feed (SPEC.md section 13): what a changing request did, by contact ids
/// only. Emails and phone numbers never appear in events.
public struct ChangeEvent: Sendable, Hashable {
    public enum Kind: UInt8, Sendable, Hashable {
        case created = 1
        case merged = 2
        case erased = 3
        case unmerged = 4
        /// A restore into an empty store (SPEC.md section 16): `contacts` says how many rows it wrote.
        case restored = 5

        public var name: String {
            switch self {
            case .created: "created"
            case .merged: "merged"
            case .erased: "erased"
            case .unmerged: "unmerged"
            case .restored: "restored"
            }
        }
    }

    public var seq: UInt64
    public var at: Timestamp
    public var kind: Kind
    /// Every row the change wrote, ascending.
    public var contactIds: [Int]
    /// The primaries of the profiles those rows belong to afterwards, ascending.
    public var primaryContactIds: [Int]
    /// `merged` only: the primaries that became secondaries.
    public var mergedPrimaryIds: [Int] = []
    /// `erased` only: the contacts that became tombstones.
    public var erasedContactIds: [Int] = []
    /// `erased` and `unmerged`: the primaries of the touched profiles, as they were before.
    public var previousPrimaryContactIds: [Int] = []
    /// `restored` only: how many Contact rows the restore wrote, tombstones included. A restore has
    /// no id lists: it wrote every row of the store.
    public var contacts = 0

    public init(
        seq: UInt64, at: Timestamp, kind: Kind, contactIds: [Int], primaryContactIds: [Int],
        mergedPrimaryIds: [Int] = [], erasedContactIds: [Int] = [], previousPrimaryContactIds: [Int] = []
    ) {
        self.seq = seq
        self.at = at
        self.kind = kind
        self.contactIds = contactIds
        self.primaryContactIds = primaryContactIds
        self.mergedPrimaryIds = mergedPrimaryIds
        self.erasedContactIds = erasedContactIds
        self.previousPrimaryContactIds = previousPrimaryContactIds
    }

    /// The one event of a restore: `{"seq":...,"at":...,"type":"restored","contacts":N}`.
    public static func restored(seq: UInt64, at: Timestamp, contacts: Int) -> ChangeEvent {
        var event = ChangeEvent(seq: seq, at: at, kind: .restored, contactIds: [], primaryContactIds: [])
        event.contacts = contacts
        return event
    }

    /// The event's JSON object, with the members its type has.
    public func writeJSON(into writer: inout JSONWriter) {
        writer.raw("{\"seq\":")
        writer.integer(seq)
        writer.raw(",\"at\":")
        writer.string(at.description)
        writer.raw(",\"type\":")
        writer.string(kind.name)
        if kind == .restored {
            writer.raw(",\"contacts\":")
            writer.integer(contacts)
            writer.raw("}")
            return
        }
        Self.writeList("contactIds", contactIds, into: &writer)
        Self.writeList("primaryContactIds", primaryContactIds, into: &writer)
        if kind == .merged { Self.writeList("mergedPrimaryIds", mergedPrimaryIds, into: &writer) }
        if kind == .erased { Self.writeList("erasedContactIds", erasedContactIds, into: &writer) }
        if kind == .erased || kind == .unmerged {
            Self.writeList("previousPrimaryContactIds", previousPrimaryContactIds, into: &writer)
        }
        writer.raw("}")
    }

    public var json: [UInt8] {
        var writer = JSONWriter()
        writeJSON(into: &writer)
        return writer.bytes
    }

    private static func writeList(_ name: String, _ ids: [Int], into writer: inout JSONWriter) {
        writer.raw(",")
        writer.string(name)
        writer.raw(":[")
        for (index, id) in ids.enumerated() {
            if index > 0 { writer.raw(",") }
            writer.integer(id)
        }
        writer.raw("]")
    }

    // MARK: - Stored form

    /// The stored form: `u8 kind · i64 at` and then each of the five id lists as a varint count
    /// followed by varint ids (`restored`: then `contacts` as a varint). Compact, since every
    /// changing request writes one.
    func encode(into bytes: inout [UInt8]) {
        bytes.append(kind.rawValue)
        withUnsafeBytes(of: at.millisecondsSince1970.littleEndian) { bytes.append(contentsOf: $0) }
        for list in [contactIds, primaryContactIds, mergedPrimaryIds, erasedContactIds, previousPrimaryContactIds] {
            Self.appendVarint(UInt64(list.count), to: &bytes)
            for id in list { Self.appendVarint(UInt64(id), to: &bytes) }
        }
        if kind == .restored { Self.appendVarint(UInt64(contacts), to: &bytes) }
    }

    /// The stored form of a `created` event of one contact, written without building the event.
    static func encodeCreated(at: Int64, contact: UInt32, primary: Int, into bytes: inout [UInt8]) {
        bytes.append(Kind.created.rawValue)
        withUnsafeBytes(of: at.littleEndian) { bytes.append(contentsOf: $0) }
        bytes.append(1)
        appendVarint(UInt64(contact), to: &bytes)
        bytes.append(1)
        appendVarint(UInt64(primary), to: &bytes)
        bytes.append(contentsOf: [0, 0, 0])
    }

    /// Reads an event stored under `seq`; `nil` when the bytes are malformed.
    init?(seq: UInt64, stored bytes: UnsafeRawBufferPointer) {
        guard bytes.count >= 9, let kind = Kind(rawValue: bytes[0]) else { return nil }
        let at = Int64(littleEndian: bytes.loadUnaligned(fromByteOffset: 1, as: Int64.self))
        var offset = 9
        var lists: [[Int]] = []
        for _ in 0..<5 {
            guard let count = Self.readVarint(bytes, &offset), count <= UInt64(bytes.count) else { return nil }
            var list: [Int] = []
            list.reserveCapacity(Int(count))
            for _ in 0..<count {
                guard let id = Self.readVarint(bytes, &offset) else { return nil }
                list.append(Int(id))
            }
            lists.append(list)
        }
        var contacts: UInt64 = 0
        if kind == .restored {
            guard let count = Self.readVarint(bytes, &offset) else { return nil }
            contacts = count
        }
        guard offset == bytes.count else { return nil }
        self.init(
            seq: seq, at: Timestamp(millisecondsSince1970: at), kind: kind, contactIds: lists[0],
            primaryContactIds: lists[1], mergedPrimaryIds: lists[2], erasedContactIds: lists[3],
            previousPrimaryContactIds: lists[4]
        )
        self.contacts = Int(contacts)
    }

    private static func appendVarint(_ value: UInt64, to bytes: inout [UInt8]) {
        var rest = value
        while rest >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: rest) | 0x80)
            rest >>= 7
        }
        bytes.append(UInt8(rest))
    }

    private static func readVarint(_ bytes: UnsafeRawBufferPointer, _ offset: inout Int) -> UInt64? {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while offset < bytes.count && shift < 64 {
            let byte = bytes[offset]
            offset += 1
            value |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return value }
            shift += 7
        }
        return nil
    }
}
