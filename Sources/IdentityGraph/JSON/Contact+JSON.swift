extension Contact {
    /// Writes the Contact record of SPEC.md section 2, every field present, null written as `null`.
    public func writeJSON(into writer: inout JSONWriter) {
        writer.raw("{\"id\":")
        writer.integer(id)
        writer.raw(",\"email\":")
        writer.optionalString(email)
        writer.raw(",\"phoneNumber\":")
        writer.optionalString(phoneNumber)
        writer.raw(",\"linkedId\":")
        writer.optionalInteger(linkedId)
        writer.raw(",\"linkPrecedence\":")
        writer.string(linkPrecedence.rawValue)
        writer.raw(",\"createdAt\":")
        writer.string(createdAt.rfc3339)
        writer.raw(",\"updatedAt\":")
        writer.string(updatedAt.rfc3339)
        writer.raw(",\"deletedAt\":")
        writer.optionalString(deletedAt?.rfc3339)
        writer.raw("}")
    }

    /// The record as a JSON object.
    public var json: [UInt8] {
        var writer = JSONWriter()
        writeJSON(into: &writer)
        return writer.bytes
    }
}
