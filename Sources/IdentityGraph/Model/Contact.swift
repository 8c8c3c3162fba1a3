/// Whether a contact is the primary of its profile or a secondary linked to that primary.
public enum LinkPrecedence: String, Sendable, Hashable {
    case primary
    case secondary
}

/// One Contact row, as SPEC.md section 2 defines it.
public struct Contact: Sendable, Hashable {
    /// Assigned in creation order from 1, never reused.
    public var id: Int
    /// Normalized email, or `nil`.
    public var email: String?
    /// Normalized phone number, or `nil`.
    public var phoneNumber: String?
    /// For a secondary, its primary's id; `nil` for a primary.
    public var linkedId: Int?
    public var createdAt: Timestamp
    public var updatedAt: Timestamp
    /// Reserved for erasure; always `nil` for now.
    public var deletedAt: Timestamp?

    public init(
        id: Int,
        email: String?,
        phoneNumber: String?,
        linkedId: Int?,
        createdAt: Timestamp,
        updatedAt: Timestamp,
        deletedAt: Timestamp? = nil
    ) {
        self.id = id
        self.email = email
        self.phoneNumber = phoneNumber
        self.linkedId = linkedId
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.deletedAt = deletedAt
    }

    /// Derived from ``linkedId``: a contact without one is a primary.
    public var linkPrecedence: LinkPrecedence { linkedId == nil ? .primary : .secondary }
}
