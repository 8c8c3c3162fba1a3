import IdentityGraph
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// A libFuzzer target for the request path (SPEC.md sections 3 and 4). Rejecting an input with a
// RequestError is the expected outcome for most of them; a trap, a sanitizer report, or one of the
// `fatalError`s below (a broken property) is a finding.
//
// libFuzzer calls the entry point from one thread, one input at a time (-jobs and -fork run separate
// processes), so the globals below are never touched concurrently. Both are Sendable constants
// anyway, which Swift 6 checks without any `nonisolated(unsafe)`.

/// The engine every accepted request goes through, created once so that requests meet the contacts
/// of earlier ones, as they would on a server.
let engine = IdentityEngine()

/// Where the completion of `identify` leaves its answer. An in-memory engine calls the completion
/// before `identify` returns, so the entry point reads it right after the call.
let answer = Mutex<Result<Profile, EngineError>?>(nil)

/// Runs one input through the request path and checks its properties; always returns 0, since
/// libFuzzer reserves other values.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRequest(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    // No copy: libFuzzer allocates exactly `size` bytes, so AddressSanitizer sees any read past them.
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    let readerAccepted = checkMembers(of: bytes)
    let request: IdentifyRequest
    do {
        request = try IdentifyRequest(json: bytes)
    } catch {
        return 0
    }
    if !readerAccepted {
        fatalError("IdentifyRequest(json:) accepted a body that JSONObjectReader rejects: \(request)")
    }
    checkIdempotent(request)
    checkIdentify(request)
    return 0
}

/// Walks the object with `JSONObjectReader` and round-trips every string it yields, member names
/// included, through `JSONWriter`. Returns whether the reader accepted the whole body.
private func checkMembers(of bytes: UnsafeRawBufferPointer) -> Bool {
    do {
        try JSONObjectReader.readObject(bytes) { key, value in
            checkRoundTrip(key)
            if case .string(let text) = value { checkRoundTrip(text) }
        }
        return true
    } catch {
        return false
    }
}

/// Writing `text` as the value of an object and reading that object back must give `text` again,
/// byte for byte (not merely canonically equivalent).
private func checkRoundTrip(_ text: String) {
    var writer = JSONWriter()
    writer.raw("{\"v\":")
    writer.string(text)
    writer.raw("}")
    var members: [(String, JSONValue)] = []
    do {
        try JSONObjectReader.readObject(writer.bytes) { key, value in members.append((key, value)) }
    } catch {
        fatalError("JSONWriter wrote \(hex(writer.bytes)) for \(hex(text.utf8)), which the reader rejects: \(error)")
    }
    guard members.count == 1, members[0].0 == "v", case .string(let back) = members[0].1,
        back.utf8.elementsEqual(text.utf8)
    else {
        fatalError("round trip changed \(hex(text.utf8)) into \(members) (written as \(hex(writer.bytes)))")
    }
}

/// Normalizing what normalization produced must change nothing.
private func checkIdempotent(_ request: IdentifyRequest) {
    if let email = request.email {
        let again = Result { () throws(RequestError) in try Normalization.email(email) }
        guard case .success(email?) = again else {
            fatalError("email \(hex(email.utf8)) normalizes again to \(again)")
        }
    }
    if let phone = request.phoneNumber {
        let again = Result { () throws(RequestError) in try Normalization.phoneNumber(phone) }
        guard case .success(phone?) = again else {
            fatalError("phone number \(hex(phone.utf8)) normalizes again to \(again)")
        }
    }
    // The string initializer normalizes too; on normalized values it must give the same request.
    let rebuilt = Result { () throws(RequestError) in
        try IdentifyRequest(email: request.email, phoneNumber: request.phoneNumber)
    }
    guard case .success(request) = rebuilt else {
        fatalError("IdentifyRequest(email:phoneNumber:) on \(request) gives \(rebuilt)")
    }
}

/// The profile identify answers must hold the request's email and phone number.
private func checkIdentify(_ request: IdentifyRequest) {
    engine.identify(request) { result in
        answer.withLock { $0 = result }
    }
    guard let result = answer.withLock({ $0.take() }) else {
        fatalError("the in-memory engine did not complete identify before returning, for \(request)")
    }
    let profile: Profile
    switch result {
    case .success(let value): profile = value
    case .failure(let error): fatalError("the in-memory engine failed identify for \(request): \(error)")
    }
    if let email = request.email, !profile.emails.contains(email) {
        fatalError("the profile for \(request) lacks its email: \(profile)")
    }
    if let phone = request.phoneNumber, !profile.phoneNumbers.contains(phone) {
        fatalError("the profile for \(request) lacks its phone number: \(profile)")
    }
}

// MARK: - Entry point

/// libFuzzer's driver (`FuzzerDriver.cpp`), declared here so that `main` can hand it the command line.
@_extern(c, "LLVMFuzzerRunDriver")
func runFuzzerDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ testOneInput: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
) -> CInt

/// The program's entry point, which starts libFuzzer's driver on `fuzzRequest`.
///
/// libFuzzer would bring its own `main`, but SwiftPM links every executable with `main` aliased to
/// `RequestFuzzer_main`, the renamed Swift entry point, so that symbol has to exist: this type
/// provides it and runs the same driver libFuzzer's `main` would.
@main
enum FuzzerEntry {
    static func main() {
        var argc = CommandLine.argc
        var argv = CommandLine.unsafeArgv
        exit(runFuzzerDriver(&argc, &argv, fuzzRequest))
    }
}

private func hex(_ bytes: some Sequence<UInt8>) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var text: [UInt8] = []
    for byte in bytes {
        text.append(digits[Int(byte >> 4)])
        text.append(digits[Int(byte & 0xF)])
    }
    return String(decoding: text, as: UTF8.self)
}
