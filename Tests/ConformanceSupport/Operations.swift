import Foundation
import IdentityGraph
import Testing

/// The shared scenarios of `../shared/conformance/operations.json` (SPEC.md sections 9 to 13), read
/// at test time so that the engine and both transports run the very same file.
public struct OperationScenario: Sendable, CustomTestStringConvertible {
    public struct Step: Sendable {
        public var op: String
        /// The step as written in the file (`request`, `contactId`, `from`, `to`, `after`), re-serialized.
        public var fields: Data
        public var status: Int
        /// The expected answer in ``canonicalJSON(_:)`` form when `status` is 200.
        public var response: String?

        /// The step's `request` object as JSON bytes (numbers stay numbers), or `{}`.
        public var requestBody: [UInt8] {
            let request = (object["request"] as? [String: Any]) ?? [:]
            return Array(try! JSONSerialization.data(withJSONObject: request, options: [.sortedKeys]))
        }

        public var object: [String: Any] {
            try! JSONSerialization.jsonObject(with: fields) as! [String: Any]
        }

        public func integer(_ name: String) -> Int? { object[name] as? Int }
    }

    /// A row of `contactsAfter`: timestamps are left out, `erased` says whether `deletedAt` is set.
    public struct Row: Sendable, Hashable, CustomStringConvertible {
        public var id: Int
        public var email: String?
        public var phoneNumber: String?
        public var linkedId: Int?
        public var linkPrecedence: String
        public var erased: Bool

        public init(_ contact: Contact) {
            id = contact.id
            email = contact.email
            phoneNumber = contact.phoneNumber
            linkedId = contact.linkedId
            linkPrecedence = contact.linkPrecedence.rawValue
            erased = contact.deletedAt != nil
        }

        public init(json: [String: Any]) {
            id = json["id"] as! Int
            email = json["email"] as? String
            phoneNumber = json["phoneNumber"] as? String
            linkedId = json["linkedId"] as? Int
            linkPrecedence = json["linkPrecedence"] as! String
            erased = (json["erased"] as? Bool) ?? !(json["deletedAt"] is NSNull || json["deletedAt"] == nil)
        }

        public var description: String {
            "\(id) \(email ?? "-") \(phoneNumber ?? "-") \(linkedId.map(String.init) ?? "-") \(linkPrecedence)"
                + (erased ? " erased" : "")
        }
    }

    /// A link of `linksAfter`, without its time.
    public struct Link: Sendable, Hashable {
        public var email: String
        public var phoneNumber: String

        public init(email: String, phoneNumber: String) {
            self.email = email
            self.phoneNumber = phoneNumber
        }
    }

    public var name: String
    /// `blocklist` lines, `maxEmailsPerProfile`, `maxPhonesPerProfile`.
    public var blocklist: [String]
    public var maxEmailsPerProfile: Int
    public var maxPhonesPerProfile: Int
    public var steps: [Step]
    public var contactsAfter: [Row]
    public var linksAfter: [Link]

    public var testDescription: String { name }

    /// Whether the scenario uses any of `ops`.
    public func uses(_ ops: Set<String>) -> Bool { steps.contains { ops.contains($0.op) } }

    public static let all: [OperationScenario] = load()

    public static var fileURL: URL {
        ConformanceScenario.fileURL.deletingLastPathComponent().appendingPathComponent("operations.json")
    }

    private static func load() -> [OperationScenario] {
        guard let data = try? Data(contentsOf: fileURL),
            let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let scenarios = root["scenarios"] as? [[String: Any]]
        else {
            fatalError("cannot read the operation scenarios at \(fileURL.path)")
        }
        return scenarios.map { scenario in
            let guards = scenario["guards"] as? [String: Any] ?? [:]
            return OperationScenario(
                name: scenario["name"] as! String,
                blocklist: guards["blocklist"] as? [String] ?? [],
                maxEmailsPerProfile: guards["maxEmailsPerProfile"] as? Int ?? 0,
                maxPhonesPerProfile: guards["maxPhonesPerProfile"] as? Int ?? 0,
                steps: (scenario["steps"] as! [[String: Any]]).map { step in
                    Step(
                        op: step["op"] as! String,
                        fields: try! JSONSerialization.data(withJSONObject: step, options: [.sortedKeys]),
                        status: step["status"] as! Int,
                        response: step["response"].map { canonicalJSON($0) }
                    )
                },
                contactsAfter: (scenario["contactsAfter"] as! [[String: Any]]).map(Row.init(json:)),
                linksAfter: (scenario["linksAfter"] as! [[String: Any]]).map {
                    Link(email: $0["email"] as! String, phoneNumber: $0["phoneNumber"] as! String)
                }
            )
        }
    }

    /// An answer as sorted-key JSON text without what the file does not compare: every `at`, and
    /// the `detail` of `ignored` entries.
    public static func canonicalJSON(_ value: Any) -> String {
        let data = try! JSONSerialization.data(withJSONObject: stripped(value), options: [.sortedKeys, .fragmentsAllowed])
        return String(decoding: data, as: UTF8.self)
    }

    /// ``canonicalJSON(_:)`` of a JSON text.
    public static func canonicalJSON(bytes: some Sequence<UInt8>) -> String {
        guard let value = try? JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed]) else {
            return "(not JSON: \(String(decoding: Array(bytes), as: UTF8.self)))"
        }
        return canonicalJSON(value)
    }

    private static func stripped(_ value: Any) -> Any {
        if let object = value as? [String: Any] {
            var result: [String: Any] = [:]
            let isIgnoredEntry = object["field"] != nil && object["reason"] != nil
            for (key, member) in object where key != "at" && !(isIgnoredEntry && key == "detail") {
                result[key] = stripped(member)
            }
            return result
        }
        if let array = value as? [Any] { return array.map(stripped) }
        return value
    }

    /// The guards as a blocklist file's text.
    public var blocklistText: String { blocklist.joined(separator: "\n") + "\n" }
}
