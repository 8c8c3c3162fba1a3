import IdentityGraph

// The checks of the fuzzer (`Tests/Fuzz`) on one input of the request path (SPEC.md sections 3 and
// 4), in one file that both compile: `Tests/Fuzz/Sources/RequestFuzzer/RequestPathChecks.swift` is a
// symbolic link to this one. The fuzzer turns a violation into a crash, which libFuzzer saves;
// `FuzzCorpusTests` replays the committed corpus through the same checks under `swift test`.

/// A property of the request path that an input broke.
struct RequestPathViolation: Error, CustomStringConvertible {
    var description: String

    init(_ description: String) {
        self.description = description
    }
}

/// Runs inputs through the request path and checks its properties. Rejecting an input with a
/// `RequestError` is the expected outcome for most of them; a violation, a trap or a sanitizer
/// report anywhere below is a finding.
struct RequestPathChecks: Sendable {
    /// The engine every accepted request goes through, kept across inputs so that requests meet the
    /// contacts of earlier ones, as they would on a server.
    let engine = IdentityEngine()

    /// Checks what one input goes through before identify; returns the request it makes, if any,
    /// for ``checkIdentify(_:)``.
    func checkDecoding(_ bytes: UnsafeRawBufferPointer) throws(RequestPathViolation) -> IdentifyRequest? {
        let readerAccepted = try checkMembers(of: bytes)
        let request: IdentifyRequest
        do {
            request = try IdentifyRequest(json: bytes)
        } catch {
            return nil
        }
        if !readerAccepted {
            throw RequestPathViolation("IdentifyRequest(json:) accepted a body that JSONObjectReader rejects: \(request)")
        }
        try checkIdempotent(request)
        return request
    }

    /// Walks the object with `JSONObjectReader` and round-trips every string it yields, member names
    /// included, through `JSONWriter`. Returns whether the reader accepted the whole body.
    private func checkMembers(of bytes: UnsafeRawBufferPointer) throws(RequestPathViolation) -> Bool {
        var strings: [String] = []
        do {
            try JSONObjectReader.readObject(bytes) { key, value in
                strings.append(key)
                if case .string(let text) = value { strings.append(text) }
            }
        } catch {
            return false
        }
        for text in strings { try checkRoundTrip(text) }
        return true
    }

    /// Writing `text` as the value of an object and reading that object back must give `text` again,
    /// byte for byte (not merely canonically equivalent).
    private func checkRoundTrip(_ text: String) throws(RequestPathViolation) {
        var writer = JSONWriter()
        writer.raw("{\"v\":")
        writer.string(text)
        writer.raw("}")
        var members: [(String, JSONValue)] = []
        do {
            try JSONObjectReader.readObject(writer.bytes) { key, value in members.append((key, value)) }
        } catch {
            throw RequestPathViolation(
                "JSONWriter wrote \(hex(writer.bytes)) for \(hex(text.utf8)), which the reader rejects: \(error)"
            )
        }
        guard members.count == 1, members[0].0 == "v", case .string(let back) = members[0].1,
            back.utf8.elementsEqual(text.utf8)
        else {
            throw RequestPathViolation("round trip changed \(hex(text.utf8)) into \(members) (written as \(hex(writer.bytes)))")
        }
    }

    /// Normalizing what normalization produced must change nothing.
    private func checkIdempotent(_ request: IdentifyRequest) throws(RequestPathViolation) {
        if let email = request.email {
            let again = Result { () throws(RequestError) in try Normalization.email(email) }
            guard case .success(email?) = again else {
                throw RequestPathViolation("email \(hex(email.utf8)) normalizes again to \(again)")
            }
        }
        if let phone = request.phoneNumber {
            let again = Result { () throws(RequestError) in try Normalization.phoneNumber(phone) }
            guard case .success(phone?) = again else {
                throw RequestPathViolation("phone number \(hex(phone.utf8)) normalizes again to \(again)")
            }
        }
        // The string initializer normalizes too; on normalized values it must give the same request.
        let rebuilt = Result { () throws(RequestError) in
            try IdentifyRequest(email: request.email, phoneNumber: request.phoneNumber)
        }
        guard case .success(request) = rebuilt else {
            throw RequestPathViolation("IdentifyRequest(email:phoneNumber:) on \(request) gives \(rebuilt)")
        }
    }

    /// Identify must succeed on an accepted request, and its profile must hold the request's email
    /// and phone number.
    func checkIdentify(_ request: IdentifyRequest) async throws(RequestPathViolation) {
        let profile: Profile
        do {
            profile = try await engine.identify(request)
        } catch {
            throw RequestPathViolation("the in-memory engine failed identify for \(request): \(error)")
        }
        if let email = request.email, !profile.emails.contains(email) {
            throw RequestPathViolation("the profile for \(request) lacks its email: \(profile)")
        }
        if let phone = request.phoneNumber, !profile.phoneNumbers.contains(phone) {
            throw RequestPathViolation("the profile for \(request) lacks its phone number: \(profile)")
        }
    }
}

/// `bytes` as lowercase hexadecimal, so that messages show exactly what was read and written.
private func hex(_ bytes: some Sequence<UInt8>) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var text: [UInt8] = []
    for byte in bytes {
        text.append(digits[Int(byte >> 4)])
        text.append(digits[Int(byte & 0xF)])
    }
    return String(decoding: text, as: UTF8.self)
}
