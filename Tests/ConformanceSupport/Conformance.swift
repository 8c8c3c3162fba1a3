import Foundation
import IdentityGraph
import Testing

/// The shared conformance scenarios (`../shared/conformance/identify.json`), read at test time so
/// that the engine and both transports run the very same file.
public struct ConformanceScenario: Sendable, CustomTestStringConvertible {
    public struct Step: Sendable {
        /// The request body, re-serialized from the file (so `123456` stays a JSON integer).
        public var body: [UInt8]
        public var status: Int
        /// The expected profile when `status` is 200.
        public var response: Profile?
    }

    /// A row of `contactsAfter` (timestamps are left out of the file).
    public struct Row: Sendable, Hashable {
        public var id: Int
        public var email: String?
        public var phoneNumber: String?
        public var linkedId: Int?
        public var linkPrecedence: String

        public init(_ contact: Contact) {
            id = contact.id
            email = contact.email
            phoneNumber = contact.phoneNumber
            linkedId = contact.linkedId
            linkPrecedence = contact.linkPrecedence.rawValue
        }

        public init(json: [String: Any]) {
            id = json["id"] as! Int
            email = json["email"] as? String
            phoneNumber = json["phoneNumber"] as? String
            linkedId = json["linkedId"] as? Int
            linkPrecedence = json["linkPrecedence"] as! String
        }
    }

    public var name: String
    public var steps: [Step]
    public var contactsAfter: [Row]

    public var testDescription: String { name }

    /// Every scenario of the file. The file is found beside the checkout (`../shared`), or at the
    /// path in `IDENTITY_GRAPH_CONFORMANCE`.
    public static let all: [ConformanceScenario] = load()

    public static var fileURL: URL {
        if let path = ProcessInfo.processInfo.environment["IDENTITY_GRAPH_CONFORMANCE"] {
            return URL(fileURLWithPath: path)
        }
        // Tests/ConformanceSupport/Conformance.swift → the package root → its sibling `shared`.
        return URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
            .appendingPathComponent("shared/conformance/identify.json")
    }

    private static func load() -> [ConformanceScenario] {
        guard let data = try? Data(contentsOf: fileURL),
            let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let scenarios = root["scenarios"] as? [[String: Any]]
        else {
            fatalError("cannot read the conformance scenarios at \(fileURL.path)")
        }
        return scenarios.map { scenario in
            ConformanceScenario(
                name: scenario["name"] as! String,
                steps: (scenario["steps"] as! [[String: Any]]).map { step in
                    let body = try! JSONSerialization.data(withJSONObject: step["request"]!, options: [.sortedKeys])
                    return Step(
                        body: Array(body),
                        status: step["status"] as! Int,
                        response: (step["response"] as? [String: Any]).map { profile(fromResponse: $0) }
                    )
                },
                contactsAfter: (scenario["contactsAfter"] as! [[String: Any]]).map(Row.init(json:))
            )
        }
    }

    /// Reads an identify response object (`{"contact": {...}}`) into a ``Profile``.
    public static func profile(fromResponse json: [String: Any]) -> Profile {
        let contact = json["contact"] as! [String: Any]
        return Profile(
            primaryContactId: contact["primaryContactId"] as! Int,
            emails: contact["emails"] as! [String],
            phoneNumbers: contact["phoneNumbers"] as! [String],
            secondaryContactIds: contact["secondaryContactIds"] as! [Int]
        )
    }
}
