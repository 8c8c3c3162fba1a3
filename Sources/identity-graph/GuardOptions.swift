import ArgumentParser
import IdentityGraph

/// The guards against over-merging (SPEC.md section 10), as `serve` and `import` both take them.
struct GuardOptions: ParsableArguments {
    @Option(help: """
        A file of values identify must never link anyone through, one rule a line: 'email VALUE', \
        'phoneNumber VALUE', 'email /REGEX/' or 'phoneNumber /REGEX/'; serve re-reads it on SIGHUP \
        (IDENTITY_GRAPH_BLOCKLIST).
        """)
    var blocklist: String?

    @Option(help: "The most distinct emails one profile may hold, 0 for no limit (IDENTITY_GRAPH_MAX_EMAILS_PER_PROFILE).")
    var maxEmailsPerProfile: Int?

    @Option(help: "The most distinct phone numbers one profile may hold, 0 for no limit (IDENTITY_GRAPH_MAX_PHONES_PER_PROFILE).")
    var maxPhonesPerProfile: Int?

    /// The guards the flags and environment ask for, and the blocklist's path (for reloads and logs).
    /// A blocklist that cannot be read or parsed is a usage error naming its file and line.
    func resolve() throws -> (guards: Guards, blocklistPath: String?) {
        let maxEmails = try Setting.integer(
            maxEmailsPerProfile, "IDENTITY_GRAPH_MAX_EMAILS_PER_PROFILE", default: 0, range: 0...Int(Int32.max),
            flag: "--max-emails-per-profile"
        )
        let maxPhones = try Setting.integer(
            maxPhonesPerProfile, "IDENTITY_GRAPH_MAX_PHONES_PER_PROFILE", default: 0, range: 0...Int(Int32.max),
            flag: "--max-phones-per-profile"
        )
        let path = Setting.value(blocklist, "IDENTITY_GRAPH_BLOCKLIST")
        var rules = Blocklist.empty
        if let path {
            do {
                rules = try Blocklist(contentsOfFile: path)
            } catch {
                throw ValidationError("--blocklist: \(error)")
            }
        }
        return (Guards(blocklist: rules, limits: ProfileLimits(maxEmails: maxEmails, maxPhones: maxPhones)), path)
    }
}
