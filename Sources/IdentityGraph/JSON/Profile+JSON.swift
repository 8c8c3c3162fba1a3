extension Profile {
    /// Writes the profile object that identify answers with (SPEC.md section 4):
    /// `{"primaryContactId":1,"emails":[...],"phoneNumbers":[...],"secondaryContactIds":[...]}`.
    public func writeJSON(into writer: inout JSONWriter) {
        writer.raw("{\"primaryContactId\":")
        writer.integer(primaryContactId)
        writer.raw(",\"emails\":[")
        for (index, email) in emails.enumerated() {
            if index > 0 { writer.raw(",") }
            writer.string(email)
        }
        writer.raw("],\"phoneNumbers\":[")
        for (index, phone) in phoneNumbers.enumerated() {
            if index > 0 { writer.raw(",") }
            writer.string(phone)
        }
        writer.raw("],\"secondaryContactIds\":[")
        for (index, id) in secondaryContactIds.enumerated() {
            if index > 0 { writer.raw(",") }
            writer.integer(id)
        }
        writer.raw("]}")
    }

    /// The whole identify response body: `{"contact":{...}}`.
    public var responseJSON: [UInt8] {
        var writer = JSONWriter()
        writer.raw("{\"contact\":")
        writeJSON(into: &writer)
        writer.raw("}")
        return writer.bytes
    }
}
