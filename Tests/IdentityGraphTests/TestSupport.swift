import Foundation
@testable import IdentityGraph

/// A fresh directory under the system's temporary folder, removed by `cleanup()`.
struct TemporaryDirectory: ~Copyable {
    let path: String

    init() {
        path = FileManager.default.temporaryDirectory
            .appendingPathComponent("identity-graph-tests-\(UUID().uuidString)").path
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func subdirectory(_ name: String) -> String { path + "/" + name }

    deinit {
        try? FileManager.default.removeItem(atPath: path)
    }
}

extension IdentifyRequest {
    /// A request from a JSON text, failing the test when it is invalid.
    static func json(_ text: String) throws -> IdentifyRequest {
        try IdentifyRequest(json: Array(text.utf8))
    }
}
