import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where an engine's index came from when it opened its store.
public enum IndexOrigin: Sendable, Hashable, CustomStringConvertible {
    /// Read from the image that the last clean stop saved, without reading a row of the store.
    case image
    /// Rebuilt from every stored row, as every start did before images existed.
    case rebuilt(IndexRebuildReason)

    public var description: String {
        switch self {
        case .image: "loaded from the saved index"
        case .rebuilt(let reason): "rebuilt from the store: \(reason)"
        }
    }
}

/// Why a start rebuilt the index instead of loading the saved image. The reasons name no data.
public enum IndexRebuildReason: String, Sendable, Hashable, CustomStringConvertible {
    /// No image: a new store, or the last stop was not clean (an image is deleted before the first write).
    case noImage
    /// The image was saved at another state of the store than the one opened.
    case stale
    /// The file is shorter than its header says.
    case truncated
    /// The file fails its checksum, or its contents do not fit together.
    case corrupt
    /// The file is not an index image, or one of another format version.
    case otherFormat
    /// The file could not be read (no permission, an I/O error).
    case unreadable
    /// The store's format is upgraded first, which rewrites it.
    case upgrade

    public var description: String {
        switch self {
        case .noImage: "no saved index (a new store, or the last stop was not clean)"
        case .stale: "the saved index is older than the store"
        case .truncated: "the saved index is truncated"
        case .corrupt: "the saved index is corrupt (checksum or layout)"
        case .otherFormat: "the saved index has another format"
        case .unreadable: "the saved index cannot be read"
        case .upgrade: "the store's format is being upgraded"
        }
    }
}

/// The in-memory index saved to a file of the data directory at a clean stop, so that the next start
/// reads it back in one pass instead of rebuilding it from every row (which probes the value tables
/// once per value, and misses the cache on most probes of a large store).
///
/// The image is a list of sections, each one array of fixed-size elements written as it lies in
/// memory, behind a header that holds a format version, the *stamp* of the store it was saved from,
/// its total length and checksums. It is trusted only when all of these agree: the stamp is the
/// store's newest change event, its cluster log position, LMDB's last transaction and the row
/// count, read when the image is saved and again at start. Besides, the store deletes the image
/// before its first write (``ContactStore``), so a process killed after writing leaves no image
/// behind, and one killed before writing leaves an image that still describes the store exactly.
///
/// Written to a temporary file, synced, then renamed over the old one, so a crash while saving
/// leaves either the previous image or none. Any doubt means a rebuild, never an error: the store
/// is the truth, the image only a cache of it.
enum IndexImage {
    static let fileName = "index.image"
    static let partialFileName = "index.image.partial"
    /// Bumped whenever the sections or their order change (the graph's layout is private to it).
    static let version: UInt32 = 3
    static let magic: UInt64 = 0x7865_646E_4967_4449  // "IDgIndex", little-endian
    static let headerBytes = 96

    /// What an image must match to be loaded instead of the store's rows.
    struct Stamp: Equatable {
        var newestSeq: UInt64
        var logPosition: UInt64
        var transaction: UInt64
        var rows: UInt64
    }

    /// A reason not to load the image, on the way to a rebuild.
    struct Refusal: Error {
        var reason: IndexRebuildReason
    }

    static func path(in directory: String) -> String { directory + "/" + fileName }

    /// Deletes the image in `directory`, if any, durably: called before a store changes, so that no
    /// later start can mistake it for the store's index.
    static func discard(in directory: String) {
        guard unlink(path(in: directory)) == 0 else { return }
        try? StoreFiles.syncDirectory(directory)
    }

    // MARK: - Saving

    /// Saves `graph` as the image of the store in `directory` at `stamp`. Returns the bytes written.
    @discardableResult
    static func save(_ graph: ContactGraph, stamp: Stamp, in directory: String) throws(StorageError) -> Int {
        let partial = directory + "/" + partialFileName
        let descriptor = open(partial, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw failure("cannot create \(partial)") }
        var writer = ImageWriter(descriptor: descriptor)
        do throws(StorageError) {
            try writer.writeZeros(headerBytes)
            try graph.writeImage(to: &writer)
            let header = Header(
                version: version, totalBytes: UInt64(writer.offset), stamp: stamp, checksum: writer.checksum.value
            )
            try header.encoded { bytes throws(StorageError) in try writer.write(bytes, at: 0) }
            guard fsync(descriptor) == 0 else { throw failure("cannot sync \(partial)") }
        } catch {
            close(descriptor)
            unlink(partial)
            throw error
        }
        close(descriptor)
        guard rename(partial, path(in: directory)) == 0 else {
            let error = failure("cannot rename \(partial)")
            unlink(partial)
            throw error
        }
        try? StoreFiles.syncDirectory(directory)
        return writer.offset
    }

    // MARK: - Loading

    /// The graph saved in `directory`'s image, when the image is whole and was saved at `stamp`.
    static func load(from directory: String, expecting stamp: Stamp) throws(Refusal) -> ContactGraph {
        let file = path(in: directory)
        let descriptor = open(file, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            if errno == ENOENT { throw Refusal(reason: .noImage) }
            throw Refusal(reason: .unreadable)
        }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { throw Refusal(reason: .unreadable) }
        var reader = ImageReader(descriptor: descriptor, size: Int(status.st_size))
        return try load(from: &reader, expecting: stamp)
    }

    private static func load(from reader: inout ImageReader, expecting stamp: Stamp) throws(Refusal) -> ContactGraph {
        let header = try Header.read(from: &reader)
        guard header.stamp == stamp else { throw Refusal(reason: .stale) }
        return try read(from: &reader, after: header)
    }

    /// The stamp and graph of a whole image of this format, without knowing the store it belongs to.
    static func read(from reader: inout ImageReader) throws(Refusal) -> (stamp: Stamp, graph: ContactGraph) {
        let header = try Header.read(from: &reader)
        return (header.stamp, try read(from: &reader, after: header))
    }

    private static func read(from reader: inout ImageReader, after header: Header) throws(Refusal) -> ContactGraph {
        let size = reader.size
        guard header.totalBytes == UInt64(size) else {
            throw Refusal(reason: header.totalBytes > UInt64(size) ? .truncated : .corrupt)
        }
        reader.checksum = ImageChecksum()
        let graph = try ContactGraph(image: &reader)
        guard reader.offset == size, reader.checksum.value == header.checksum else {
            throw Refusal(reason: .corrupt)
        }
        return graph
    }

    // MARK: - The header

    /// The fixed first bytes of an image: magic, version, total length, stamp, checksum of the rest,
    /// and a checksum of the header itself (so a damaged stamp reads as damage, not as staleness).
    private struct Header {
        var version: UInt32
        var totalBytes: UInt64
        var stamp: Stamp
        var checksum: UInt64

        func encoded(_ body: (UnsafeRawBufferPointer) throws(StorageError) -> Void) throws(StorageError) {
            var words = [UInt64](repeating: 0, count: IndexImage.headerBytes / 8)
            words[0] = IndexImage.magic
            words[1] = UInt64(version)
            words[2] = totalBytes
            words[3] = stamp.newestSeq
            words[4] = stamp.logPosition
            words[5] = stamp.transaction
            words[6] = stamp.rows
            words[7] = checksum
            words[11] = Self.selfChecksum(words)
            for index in words.indices { words[index] = words[index].littleEndian }
            try withBytes(of: words, body)
        }

        static func read(from reader: inout ImageReader) throws(Refusal) -> Header {
            guard reader.size >= IndexImage.headerBytes else {
                throw Refusal(reason: reader.size >= 8 ? .truncated : .otherFormat)
            }
            var words = [UInt64](repeating: 0, count: IndexImage.headerBytes / 8)
            try withMutableBytes(of: &words) { bytes throws(Refusal) in try reader.readRaw(into: bytes, hashing: false) }
            for index in words.indices { words[index] = UInt64(littleEndian: words[index]) }
            // Another version may lay its header out differently: its version word is all that is read.
            guard words[0] == IndexImage.magic, words[1] == UInt64(IndexImage.version) else {
                throw Refusal(reason: .otherFormat)
            }
            guard words[11] == selfChecksum(words) else { throw Refusal(reason: .corrupt) }
            return Header(
                version: UInt32(words[1]), totalBytes: words[2],
                stamp: Stamp(newestSeq: words[3], logPosition: words[4], transaction: words[5], rows: words[6]),
                checksum: words[7]
            )
        }

        /// The checksum of the header's first 88 bytes (the last word, the checksum itself, as 0).
        private static func selfChecksum(_ words: [UInt64]) -> UInt64 {
            var copy = words
            copy[11] = 0
            var checksum = ImageChecksum()
            copy.withUnsafeBytes { checksum.add($0) }
            return checksum.value
        }
    }

    static func failure(_ what: String) -> StorageError {
        StorageError(.unavailable, "\(what): \(String(cString: strerror(errno)))")
    }
}

// MARK: - Sections

/// Every section starts with this many bytes (element count, element size, two reserved words), and
/// its payload is padded to a multiple of it, so that the checksum always runs over whole blocks.
private let sectionAlignment = 32

/// Writes an image's sections, checksumming them as they go.
struct ImageWriter {
    let descriptor: Int32
    private(set) var offset = 0
    private(set) var checksum = ImageChecksum()

    init(descriptor: Int32) {
        self.descriptor = descriptor
    }

    /// Writes `array` as one section, straight from its storage.
    mutating func section<T: BitwiseCopyable>(_ array: [T]) throws(StorageError) {
        let header: [UInt64] = [UInt64(array.count).littleEndian, UInt64(MemoryLayout<T>.stride).littleEndian, 0, 0]
        try withBytes(of: header) { bytes throws(StorageError) in try append(bytes) }
        try withBytes(of: array) { bytes throws(StorageError) in
            let whole = bytes.count & ~(sectionAlignment - 1)
            try append(UnsafeRawBufferPointer(rebasing: bytes[..<whole]))
            guard whole < bytes.count else { return }
            var tail = [UInt8](repeating: 0, count: sectionAlignment)
            tail.withUnsafeMutableBytes { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[whole...])) }
            try withBytes(of: tail) { tail throws(StorageError) in try append(tail) }
        }
    }

    mutating func writeZeros(_ count: Int) throws(StorageError) {
        let zeros = [UInt8](repeating: 0, count: count)
        try withBytes(of: zeros) { bytes throws(StorageError) in try write(bytes, at: nil) }
    }

    private mutating func append(_ bytes: UnsafeRawBufferPointer) throws(StorageError) {
        checksum.add(bytes)
        try write(bytes, at: nil)
    }

    /// Writes `bytes` at the end (`at` nil) or at `at` (the header, last).
    mutating func write(_ bytes: UnsafeRawBufferPointer, at position: Int?) throws(StorageError) {
        var done = 0
        while done < bytes.count {
            let chunk = min(bytes.count - done, 1 << 30)
            let written = if let position {
                pwrite(descriptor, bytes.baseAddress! + done, chunk, off_t(position + done))
            } else {
                systemWrite(descriptor, bytes.baseAddress! + done, chunk)
            }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { throw IndexImage.failure("cannot write the index image") }
            done += written
        }
        if position == nil { offset += bytes.count }
    }
}

/// Reads an image's sections back into exactly sized arrays, checksumming them as they come, from a file
/// or from memory.
struct ImageReader {
    let descriptor: Int32
    /// The image itself when it is in memory (`descriptor` is then -1).
    let memory: UnsafeRawBufferPointer?
    let size: Int
    private(set) var offset = 0
    var checksum = ImageChecksum()
    /// Bytes read between checksum updates: small enough to still be in the cache when hashed.
    private static let chunk = 1 << 20

    init(descriptor: Int32, size: Int) {
        self.descriptor = descriptor
        self.size = size
        memory = nil
        arrived = nil
        consumed = nil
    }

    /// Waits until the first `count` bytes of the memory are there; false when they never will be.
    let arrived: ((Int) -> Bool)?
    /// Told, as the reading moves on, that the memory before this offset will not be read again.
    let consumed: ((Int) -> Void)?

    init(memory: UnsafeRawBufferPointer, arrived: ((Int) -> Bool)? = nil, consumed: ((Int) -> Void)? = nil) {
        descriptor = -1
        size = memory.count
        self.memory = memory
        self.arrived = arrived
        self.consumed = consumed
    }

    /// Reads the next section, which must hold elements of `T`.
    mutating func section<T: BitwiseCopyable>(of type: T.Type = T.self) throws(IndexImage.Refusal) -> [T] {
        var header = [UInt64](repeating: 0, count: 4)
        try withMutableBytes(of: &header) { bytes throws(IndexImage.Refusal) in try readRaw(into: bytes, hashing: true) }
        let count = Int(truncatingIfNeeded: UInt64(littleEndian: header[0]))
        let stride = Int(truncatingIfNeeded: UInt64(littleEndian: header[1]))
        let (bytes, overflow) = count.multipliedReportingOverflow(by: MemoryLayout<T>.stride)
        guard stride == MemoryLayout<T>.stride, count >= 0, !overflow, bytes <= size - offset else {
            throw IndexImage.Refusal(reason: .corrupt)
        }
        var failure: IndexImage.Refusal?
        // An eighth more room than the image holds: the first values added after a start would otherwise
        // grow an exactly sized array, copying all of it (gigabytes at 50M contacts) into fresh pages.
        // Room never written is never touched, so it costs address space, not memory.
        let array = [T](unsafeUninitializedCapacity: count + count / 8 + 16) { buffer, initialized in
            let raw = UnsafeMutableRawBufferPointer(buffer)
            Self.preferHugePages(raw)
            let whole = bytes & ~(sectionAlignment - 1)
            do throws(IndexImage.Refusal) {
                try readRaw(into: UnsafeMutableRawBufferPointer(rebasing: raw[..<whole]), hashing: true)
                if whole < bytes {
                    var tail = [UInt8](repeating: 0, count: sectionAlignment)
                    try withMutableBytes(of: &tail) { tail throws(IndexImage.Refusal) in
                        try readRaw(into: tail, hashing: true)
                        UnsafeMutableRawBufferPointer(rebasing: raw[whole...])
                            .copyMemory(from: UnsafeRawBufferPointer(rebasing: tail[..<(bytes - whole)]))
                    }
                }
                initialized = count
            } catch {
                // The elements are plain bits: none needs deinitializing.
                failure = error
                initialized = 0
            }
        }
        if let failure { throw failure }
        return array
    }

    /// Asks for huge pages under a large array about to be filled: reading a gigabyte into 4 KiB pages
    /// costs a page fault every 4 KiB, which is most of the time a load takes; and the value tables'
    /// random probes miss the TLB less. Only the 2 MiB-aligned inside of the buffer is advised; where
    /// the system does not do huge pages, the advice is ignored.
    static func preferHugePages(_ buffer: UnsafeMutableRawBufferPointer) {
        #if os(Linux)
        let huge = 2 << 20
        guard buffer.count >= 2 * huge, let base = buffer.baseAddress else { return }
        advise(MADV_HUGEPAGE, pagesFrom: Int(bitPattern: base), to: Int(bitPattern: base) + buffer.count, page: huge)
        #endif
    }

    #if os(Linux)
    /// Gives `advice` to the whole pages of `page` bytes (a power of two) between the addresses `from` and
    /// `to`; returns where the last one ends, nil when none fits.
    @discardableResult
    static func advise(_ advice: Int32, pagesFrom from: Int, to: Int, page: Int) -> Int? {
        let start = (from + page - 1) & ~(page - 1)
        let end = to & ~(page - 1)
        guard end > start, let address = UnsafeMutableRawPointer(bitPattern: start) else { return nil }
        _ = madvise(address, end - start, advice)
        return end
    }
    #endif

    /// Fills `buffer` from the file or the memory, checksumming it chunk by chunk when `hashing`.
    mutating func readRaw(into buffer: UnsafeMutableRawBufferPointer, hashing: Bool) throws(IndexImage.Refusal) {
        if let memory {
            guard buffer.count <= memory.count - offset else { throw IndexImage.Refusal(reason: .truncated) }
            var done = 0
            while done < buffer.count {
                let want = min(buffer.count - done, Self.chunk)
                if let arrived, !arrived(offset + done + want) { throw IndexImage.Refusal(reason: .truncated) }
                let part = UnsafeMutableRawBufferPointer(rebasing: buffer[done..<(done + want)])
                part.copyMemory(from: UnsafeRawBufferPointer(rebasing: memory[(offset + done)..<(offset + done + want)]))
                if hashing { checksum.add(UnsafeRawBufferPointer(part)) }
                done += want
                consumed?(offset + done)
            }
            offset += buffer.count
            return
        }
        var done = 0
        while done < buffer.count {
            let want = min(buffer.count - done, Self.chunk)
            let got = systemRead(descriptor, buffer.baseAddress! + done, want)
            if got < 0 && errno == EINTR { continue }
            if got < 0 { throw IndexImage.Refusal(reason: .unreadable) }
            guard got > 0 else { throw IndexImage.Refusal(reason: .truncated) }
            if hashing {
                // Chunks stay multiples of the block size: a short read is completed before hashing.
                var filled = got
                while filled < want {
                    let more = systemRead(descriptor, buffer.baseAddress! + done + filled, want - filled)
                    if more < 0 && errno == EINTR { continue }
                    guard more > 0 else { throw IndexImage.Refusal(reason: more == 0 ? .truncated : .unreadable) }
                    filled += more
                }
                checksum.add(UnsafeRawBufferPointer(rebasing: buffer[done..<(done + want)]))
                done += want
            } else {
                done += got
            }
        }
        offset += buffer.count
    }
}

/// An index image in memory: the one that came with the checkpoint a cluster server joined from
/// (SPEC.md section 17), filled part by part as they arrive and read into a graph (``decode()``) close
/// behind them, while the rest of the checkpoint still arrives; then given to the engine that opens the
/// joined store (``IdentityEngine/Options/image``), which takes the graph on the same terms as the image
/// file of a clean stop: whole, of this format, and stamped with the store's state, else it rebuilds the
/// index. It is never written to the data directory: the engine's first write would delete it there.
///
/// `@unchecked Sendable`: each part's bytes are written by one task of a join, before it reports the
/// part with ``arrived(part:)``, and only read after that; the rest of its state is behind locks.
public final class IndexImageBytes: @unchecked Sendable {
    /// The image's bytes, until ``decode()`` has read them.
    public private(set) var bytes: UnsafeMutableRawBufferPointer
    /// The bytes of each part but the last.
    private let partBytes: Int
    private let lock = NSLock()
    private var decoded: Result<(stamp: IndexImage.Stamp, graph: ContactGraph), IndexImage.Refusal>?
    /// Which parts have arrived, how many bytes from the start are all there, and whether more may come.
    private let arrival = NSCondition()
    private var arrivedParts: [Bool]
    private var whole = 0
    private var ended = false

    /// Room for an image of `count` bytes, to arrive in parts of `partBytes` (the last one shorter).
    public convenience init(count: Int, partBytes: Int) {
        self.init(count: count, partBytes: partBytes, releaseUnit: 2 << 20)
    }

    /// `releaseUnit`: what ``release(below:)`` gives back whole, a huge page (tests use smaller ones).
    init(count: Int, partBytes: Int, releaseUnit: Int) {
        self.releaseUnit = releaseUnit
        bytes = .allocate(byteCount: max(count, 0), alignment: 64)
        self.partBytes = max(partBytes, 1)
        arrivedParts = Array(repeating: false, count: (max(count, 0) + self.partBytes - 1) / self.partBytes)
        ImageReader.preferHugePages(bytes)
    }

    deinit { bytes.deallocate() }

    /// Says that part `part` is written, so that ``decode()`` may read it.
    public func arrived(part: Int) {
        arrival.withLock {
            guard arrivedParts.indices.contains(part) else { return }
            arrivedParts[part] = true
            var next = whole / partBytes
            while next < arrivedParts.count, arrivedParts[next] { next += 1 }
            whole = min(next * partBytes, bytes.count)
            arrival.broadcast()
        }
    }

    /// Says that no more parts will arrive (the download failed, or is over): a ``decode()`` waiting for
    /// one stops, the image refused as truncated.
    public func end() {
        arrival.withLock {
            ended = true
            arrival.broadcast()
        }
    }

    /// How many bytes from the start ``release(below:)`` has given back; touched by the decoding thread only.
    private(set) var released = 0
    private let releaseUnit: Int

    /// Gives the memory under the image's first `offset` bytes back to the system, in steps of at least
    /// four whole huge pages (`releaseUnit`): the graph has read them, and nothing writes there any more
    /// (every part below has arrived). This keeps a join's peak memory down by what the graph has copied, and the pages
    /// freed are the ones the graph's arrays and the parts still to come are given next, which costs far
    /// less than pages new to the process: on this project's virtual machines a first write to memory
    /// the system had not lately used ran at 0.4-2 GB/s against 8 GB/s for pages just freed (the kernel
    /// zeroing each one). Measured on joins of 1M contacts, six alternated: the joiner's system time went
    /// from 160-680 ms to 90-140 ms, its time to `/healthz` from 327-622 ms to 247-319 ms.
    private func release(below offset: Int) {
        #if os(Linux)
        guard let base = bytes.baseAddress, offset - released >= 4 * releaseUnit else { return }
        let address = Int(bitPattern: base)
        if let end = ImageReader.advise(
            MADV_DONTNEED, pagesFrom: address + released, to: address + offset, page: releaseUnit
        ) {
            released = end - address
        }
        #endif
    }

    /// Waits until the first `count` bytes have arrived; false when they never will.
    private func wait(for count: Int) -> Bool {
        arrival.withLock {
            while whole < count, !ended { arrival.wait() }
            return whole >= count
        }
    }

    /// Reads the image into the graph it holds as its parts arrive, checked whole and of this format (its
    /// stamp is checked when the engine opens the store), then lets go of the bytes. Blocks until the last
    /// part has arrived, or ``end()``, and about as long after as a start that loads an image file: call
    /// it on a thread that may block.
    public func decode() {
        lock.withLock {
            guard decoded == nil else { return }
            var reader = ImageReader(
                memory: UnsafeRawBufferPointer(bytes), arrived: { [unowned self] count in wait(for: count) },
                consumed: { [unowned self] offset in release(below: offset) }
            )
            do throws(IndexImage.Refusal) {
                decoded = .success(try IndexImage.read(from: &reader))
            } catch {
                decoded = .failure(error)
            }
            bytes.deallocate()
            bytes = UnsafeMutableRawBufferPointer(start: nil, count: 0)
        }
    }

    /// The graph, if the image was saved at `stamp`; handed over once (a second call finds none).
    func graph(expecting stamp: IndexImage.Stamp) throws(IndexImage.Refusal) -> ContactGraph {
        end()
        decode()
        let outcome = lock.withLock {
            defer { decoded = .failure(IndexImage.Refusal(reason: .noImage)) }
            return decoded
        }
        guard let image = try outcome?.get() else { throw IndexImage.Refusal(reason: .noImage) }
        guard image.stamp == stamp else { throw IndexImage.Refusal(reason: .stale) }
        return image.graph
    }
}

/// A 64-bit checksum of an image, four lanes of multiply-rotate rounds so that it runs at memory
/// speed. It finds damage to the file (a torn write, a flipped bit), not an adversary: the data
/// directory is trusted. Every call adds a multiple of 32 bytes.
struct ImageChecksum {
    private var lanes: (UInt64, UInt64, UInt64, UInt64) = (
        0x9E37_79B9_7F4A_7C15, 0xC2B2_AE3D_27D4_EB4F, 0x1656_67B1_9E37_79F9, 0x85EB_CA77_C2B2_AE63
    )
    private var length: UInt64 = 0

    @inline(__always)
    private static func round(_ lane: UInt64, _ word: UInt64) -> UInt64 {
        let mixed = lane &+ word &* 0xC2B2_AE3D_27D4_EB4F
        return ((mixed << 31) | (mixed >> 33)) &* 0x9E37_79B9_7F4A_7C15
    }

    mutating func add(_ bytes: UnsafeRawBufferPointer) {
        precondition(bytes.count % 32 == 0, "the image checksum runs over whole 32-byte blocks")
        var (a, b, c, d) = lanes
        var offset = 0
        while offset < bytes.count {
            a = Self.round(a, bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
            b = Self.round(b, bytes.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self))
            c = Self.round(c, bytes.loadUnaligned(fromByteOffset: offset + 16, as: UInt64.self))
            d = Self.round(d, bytes.loadUnaligned(fromByteOffset: offset + 24, as: UInt64.self))
            offset += 32
        }
        lanes = (a, b, c, d)
        length &+= UInt64(bytes.count)
    }

    var value: UInt64 {
        var hash = Self.round(lanes.0, lanes.1 &+ length)
        hash = Self.round(hash, lanes.2)
        hash = Self.round(hash, lanes.3)
        hash ^= hash >> 29
        hash = hash &* 0xFF51_AFD7_ED55_8CCD
        return hash ^ (hash >> 32)
    }
}

// The readers and writers above have methods of the same names as the system calls.
private func systemWrite(_ descriptor: Int32, _ bytes: UnsafeRawPointer, _ count: Int) -> Int {
    write(descriptor, bytes, count)
}

private func systemRead(_ descriptor: Int32, _ bytes: UnsafeMutableRawPointer, _ count: Int) -> Int {
    read(descriptor, bytes, count)
}

/// `withUnsafeBytes` for a body with a typed error (the standard library's rethrows an untyped one).
private func withBytes<T, E: Error>(of array: [T], _ body: (UnsafeRawBufferPointer) throws(E) -> Void) throws(E) {
    try array.withUnsafeBytes { bytes in Result { () throws(E) in try body(bytes) } }.get()
}

private func withMutableBytes<T, E: Error>(
    of array: inout [T], _ body: (UnsafeMutableRawBufferPointer) throws(E) -> Void
) throws(E) {
    try array.withUnsafeMutableBytes { bytes in Result { () throws(E) in try body(bytes) } }.get()
}
