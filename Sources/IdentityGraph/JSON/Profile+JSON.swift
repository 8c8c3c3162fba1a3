extension Profile {
    /// Writes the profile object that identify answers with (SPEC.md section 4):
    /// `{"primaryContactId":1,"emails":[...],"phoneNumbers":[...],"secondaryContactIds":[...]}`.
    public func writeJSON(into writer: inout JSONWriter) {
        ProfileJSON.write(
            primaryContactId: primaryContactId, into: &writer,
            emails: { writer in
                for (index, email) in emails.enumerated() {
                    if index > 0 { writer.raw(",") }
                    writer.string(email)
                }
            },
            phoneNumbers: { writer in
                for (index, phone) in phoneNumbers.enumerated() {
                    if index > 0 { writer.raw(",") }
                    writer.string(phone)
                }
            },
            secondaryContactIds: { writer in
                for (index, id) in secondaryContactIds.enumerated() {
                    if index > 0 { writer.raw(",") }
                    writer.integer(id)
                }
            }
        )
    }

    /// The whole identify response body: `{"contact":{...}}`.
    public var responseJSON: [UInt8] {
        ProfileJSON.responseBody { writeJSON(into: &$0) }
    }
}

/// The shape of the profile object, in one place: its members, their order and brackets. The
/// closures write each array's elements, comma-separated; a ``Profile`` value and the engine's
/// graph (which writes straight from its value tables, with no `Profile` in between) both use it.
enum ProfileJSON {
    /// The identify response body, `{"contact":PROFILE}`, with `profile` writing PROFILE.
    static func responseBody(_ profile: (inout JSONWriter) -> Void) -> [UInt8] {
        var writer = JSONWriter()
        writer.raw("{\"contact\":")
        profile(&writer)
        writer.raw("}")
        return writer.bytes
    }

    @inline(__always)
    static func write(
        primaryContactId: Int,
        into writer: inout JSONWriter,
        emails: (inout JSONWriter) -> Void,
        phoneNumbers: (inout JSONWriter) -> Void,
        secondaryContactIds: (inout JSONWriter) -> Void
    ) {
        writer.raw("{\"primaryContactId\":")
        writer.integer(primaryContactId)
        if writer.bitespeedCompat {
            writer.raw(",\"primaryContatctId\":")
            writer.integer(primaryContactId)
        }
        writer.raw(",\"emails\":[")
        emails(&writer)
        writer.raw("],\"phoneNumbers\":[")
        phoneNumbers(&writer)
        writer.raw("],\"secondaryContactIds\":[")
        secondaryContactIds(&writer)
        writer.raw("]}")
    }
}
