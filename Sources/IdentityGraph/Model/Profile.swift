/// The unified view of one person: what identify answers (SPEC.md section 4, step 5).
public struct Profile: Sendable, Hashable {
    /// The id of the profile's primary, its oldest contact.
    public var primaryContactId: Int
    /// Each distinct email once: the primary's first, then in the order of the contacts carrying them.
    public var emails: [String]
    /// Each distinct phone number once, ordered as ``emails``.
    public var phoneNumbers: [String]
    /// The ids of every secondary, ascending.
    public var secondaryContactIds: [Int]

    public init(primaryContactId: Int, emails: [String], phoneNumbers: [String], secondaryContactIds: [Int]) {
        self.primaryContactId = primaryContactId
        self.emails = emails
        self.phoneNumbers = phoneNumbers
        self.secondaryContactIds = secondaryContactIds
    }
}
