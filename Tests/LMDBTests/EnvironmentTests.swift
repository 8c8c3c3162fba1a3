import Foundation
import LMDB
import Testing

/// The safe wrapper over LMDB, each test on its own environment in a fresh temporary directory.
struct EnvironmentTests {
    @Test func putThenGetRoundTripsInANamedDatabase() throws {
        try withEnvironment { environment in
            let contacts = try environment.write { transaction in
                let contacts = try transaction.openDatabase(named: "contacts", create: true)
                try transaction.put(bytes("alice@example.com"), forKey: bytes("alice"), in: contacts)
                try transaction.put([0x00, 0xFF, 0x7F], forKey: [0x01], in: contacts)
                return contacts
            }
            try environment.read { transaction throws in
                #expect(try transaction.value(forKey: bytes("alice"), in: contacts) == bytes("alice@example.com"))
                #expect(try transaction.value(forKey: [0x01], in: contacts) == [0x00, 0xFF, 0x7F])
                #expect(try transaction.value(forKey: bytes("bob"), in: contacts) == nil)
            }
        }
    }

    @Test func sameKeyInTwoNamedDatabasesHoldsTwoValues() throws {
        try withEnvironment { environment in
            let (first, second) = try environment.write { transaction in
                let first = try transaction.openDatabase(named: "first", create: true)
                let second = try transaction.openDatabase(named: "second", create: true)
                try transaction.put(bytes("one"), forKey: bytes("k"), in: first)
                try transaction.put(bytes("two"), forKey: bytes("k"), in: second)
                return (first, second)
            }
            try environment.read { transaction throws in
                #expect(try transaction.value(forKey: bytes("k"), in: first) == bytes("one"))
                #expect(try transaction.value(forKey: bytes("k"), in: second) == bytes("two"))
            }
        }
    }

    @Test func writeWhoseBodyThrowsKeepsNothing() throws {
        try withEnvironment { environment in
            let database = try environment.write { transaction in
                let database = try transaction.openDatabase(named: "d", create: true)
                try transaction.put(bytes("before"), forKey: bytes("kept"), in: database)
                return database
            }
            #expect(throws: Refusal.self) {
                try environment.write { transaction in
                    try transaction.put(bytes("after"), forKey: bytes("kept"), in: database)
                    try transaction.put(bytes("new"), forKey: bytes("added"), in: database)
                    #expect(try transaction.delete(key: bytes("kept"), in: database))
                    throw Refusal()
                }
            }
            try environment.read { transaction throws in
                #expect(try transaction.value(forKey: bytes("kept"), in: database) == bytes("before"))
                #expect(try transaction.value(forKey: bytes("added"), in: database) == nil)
                #expect(try transaction.count(in: database) == 1)
            }
        }
    }

    @Test func databaseCreatedInAThrowingWriteDoesNotExist() throws {
        try withEnvironment { environment in
            #expect(throws: Refusal.self) {
                try environment.write { transaction in
                    let database = try transaction.openDatabase(named: "ghost", create: true)
                    try transaction.put(bytes("v"), forKey: bytes("k"), in: database)
                    throw Refusal()
                }
            }
            let error = try #require(throws: LMDBError.self) {
                try environment.read { transaction in try transaction.openDatabase(named: "ghost") }
            }
            #expect(error.isNotFound)
        }
    }

    @Test func forEachVisitsKeysInByteOrder() throws {
        let keys: [[UInt8]] = [
            bytes("b"), [0xFF], bytes("ab"), [0x00, 0x01], bytes("a"), [0x01], [0x00], bytes("B"), [0x80, 0x00],
        ]
        try withEnvironment { environment in
            let database = try environment.write { transaction in
                let database = try transaction.openDatabase(named: "ordered", create: true)
                for (position, key) in keys.enumerated() {
                    try transaction.put([UInt8(position)], forKey: key, in: database)
                }
                return database
            }
            var visited: [(key: [UInt8], value: [UInt8])] = []
            try environment.read { transaction in
                try transaction.forEach(in: database) { key, value in
                    visited.append((Array(key), Array(value)))
                    return true
                }
            }
            let expected = keys.sorted { $0.lexicographicallyPrecedes($1) }
            #expect(visited.map(\.key) == expected)
            for entry in visited {
                // Each value is the position its key was written at.
                #expect(entry.value.count == 1)
                #expect(entry.value.first.map { keys[Int($0)] } == entry.key)
            }
        }
    }

    @Test func forEachStopsWhenTheBodyReturnsFalse() throws {
        try withEnvironment { environment in
            let database = try fill(environment, keys: ["a", "b", "c", "d"])
            var visited: [String] = []
            try environment.read { transaction in
                try transaction.forEach(in: database) { key, _ in
                    visited.append(String(decoding: key, as: UTF8.self))
                    return visited.count < 2
                }
            }
            #expect(visited == ["a", "b"])
        }
    }

    @Test func lastReturnsTheLastKeyInByteOrder() throws {
        try withEnvironment { environment in
            let database = try fill(environment, keys: ["m", "zz", "a", "z"])
            let last = try environment.read { transaction in try transaction.last(in: database) }
            #expect(last?.key == bytes("zz"))
            #expect(last?.value == bytes("value of zz"))
        }
    }

    @Test func lastOfAnEmptyDatabaseIsNil() throws {
        try withEnvironment { environment in
            let database = try fill(environment, keys: [])
            let last = try environment.read { transaction in try transaction.last(in: database) }
            #expect(last == nil)
        }
    }

    @Test func deleteRemovesTheKeyAndSaysWhetherItWasThere() throws {
        try withEnvironment { environment in
            let database = try fill(environment, keys: ["a", "b"])
            try environment.write { transaction throws in
                #expect(try transaction.delete(key: bytes("a"), in: database))
                #expect(try !transaction.delete(key: bytes("a"), in: database))
                #expect(try !transaction.delete(key: bytes("never"), in: database))
            }
            try environment.read { transaction throws in
                #expect(try transaction.value(forKey: bytes("a"), in: database) == nil)
                #expect(try transaction.value(forKey: bytes("b"), in: database) == bytes("value of b"))
            }
        }
    }

    @Test func countIsTheNumberOfEntries() throws {
        try withEnvironment { environment in
            let database = try fill(environment, keys: [])
            #expect(try environment.read { transaction in try transaction.count(in: database) } == 0)
            try environment.write { transaction in
                for key in ["a", "b", "c"] {
                    try transaction.put(bytes("1"), forKey: bytes(key), in: database)
                }
                // Overwriting a key does not add an entry.
                try transaction.put(bytes("2"), forKey: bytes("a"), in: database)
                #expect(try transaction.count(in: database) == 3)
                try transaction.delete(key: bytes("b"), in: database)
            }
            #expect(try environment.read { transaction in try transaction.count(in: database) } == 2)
        }
    }

    @Test func putWithNoOverwriteRefusesAnExistingKey() throws {
        try withEnvironment { environment in
            let database = try fill(environment, keys: ["a"])
            #expect(throws: LMDBError.self) {
                try environment.write { transaction in
                    try transaction.put(bytes("other"), forKey: bytes("a"), in: database, flags: .noOverwrite)
                }
            }
            try environment.read { transaction throws in
                #expect(try transaction.value(forKey: bytes("a"), in: database) == bytes("value of a"))
            }
        }
    }

    @Test func fullMapThrowsMapFullAndAGrownMapTakesTheSameWrite() throws {
        let big = [UInt8](repeating: 0xAB, count: 1 << 20)
        try withEnvironment(options: Environment.Options(mapSize: 64 * 1024)) { environment in
            func writeBig() throws {
                try environment.write { transaction in
                    let database = try transaction.openDatabase(named: "big", create: true)
                    try transaction.put(big, forKey: bytes("blob"), in: database)
                }
            }
            let error = try #require(throws: LMDBError.self) { try writeBig() }
            #expect(error.isMapFull)

            try environment.setMapSize(16 << 20)
            #expect(environment.mapSize >= 16 << 20)
            try writeBig()
            let stored = try environment.read { transaction in
                let database = try transaction.openDatabase(named: "big")
                return try transaction.value(forKey: bytes("blob"), in: database)
            }
            #expect(stored == big)
        }
    }

    @Test(arguments: [true, false])
    func copyOpensWithTheSameData(compacting: Bool) throws {
        try withTemporaryDirectory { copyPath in
            try withEnvironment { environment in
                let database = try fill(environment, keys: ["a", "b", "c", "gone"])
                let deleted = try environment.write { transaction in
                    try transaction.delete(key: bytes("gone"), in: database)
                }
                #expect(deleted)
                try environment.copy(to: copyPath, compacting: compacting)
            }
            let copy = try Environment(path: copyPath)
            try copy.read { transaction in
                let database = try transaction.openDatabase(named: "filled")
                var keys: [String] = []
                try transaction.forEach(in: database) { key, value in
                    let text = String(decoding: key, as: UTF8.self)
                    keys.append(text)
                    #expect(Array(value) == bytes("value of \(text)"))
                    return true
                }
                #expect(keys == ["a", "b", "c"])
            }
        }
    }

    @Test func errorDescriptionContainsLMDBsMessage() throws {
        let missing = FileManager.default.temporaryDirectory
            .appendingPathComponent("lmdb-tests-missing-\(UUID().uuidString)").path
        let openError = try #require(throws: LMDBError.self) { try Environment(path: missing) }
        #expect(!openError.message.isEmpty)
        #expect(openError.description.contains(openError.message))
        #expect(openError.description.contains(missing))

        // MDB_NOTFOUND, whose text LMDB defines itself.
        let notFound = LMDBError(code: -30798, operation: "looking up a key")
        #expect(notFound.isNotFound)
        #expect(notFound.message.contains("MDB_NOTFOUND"))
        #expect(notFound.description == "looking up a key: \(notFound.message)")
    }

    @Test func mapFullErrorDescriptionNamesTheCondition() throws {
        try withEnvironment(options: Environment.Options(mapSize: 64 * 1024)) { environment in
            let error = try #require(throws: LMDBError.self) {
                try environment.write { transaction in
                    let database = try transaction.openDatabase(named: "big", create: true)
                    try transaction.put([UInt8](repeating: 1, count: 1 << 20), forKey: bytes("blob"), in: database)
                }
            }
            #expect(error.description.contains("MDB_MAP_FULL"))
        }
    }

    // MARK: - Helpers

    private struct Refusal: Error {}

    private func bytes(_ text: String) -> [UInt8] {
        Array(text.utf8)
    }

    /// A database named "filled" holding "value of <key>" under each of `keys`.
    private func fill(_ environment: Environment, keys: [String]) throws -> Database {
        try environment.write { transaction in
            let database = try transaction.openDatabase(named: "filled", create: true)
            for key in keys {
                try transaction.put(bytes("value of \(key)"), forKey: bytes(key), in: database)
            }
            return database
        }
    }

    private func withTemporaryDirectory<R>(_ body: (String) throws -> R) throws -> R {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("lmdb-tests-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: url) }
        return try body(url.path)
    }

    /// Runs `body` with an environment in a fresh directory; the environment is closed before the
    /// directory is removed, since `body` holds the only reference to it.
    private func withEnvironment<R>(
        options: Environment.Options = Environment.Options(),
        _ body: (Environment) throws -> R
    ) throws -> R {
        try withTemporaryDirectory { path in
            try body(Environment(path: path, options: options))
        }
    }
}
