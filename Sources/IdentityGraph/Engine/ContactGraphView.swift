/// Read-only access to the graph inside ``IdentityEngine/read(_:)``, valid only during the call.
///
/// It is not `Sendable`, so it cannot leave the call as a result; keeping it otherwise would make
/// the next change copy the whole graph.
public struct ContactGraphView {
    let graph: ContactGraph

    /// The number of contacts; ids run from 1 to this.
    public var contactCount: Int { graph.contactCount }
    /// The number of profiles (primaries).
    public var profileCount: Int { graph.profileCount }

    /// The record of contact `id`, or `nil` when there is none.
    public func contact(id: Int) -> Contact? { graph.contact(id: id) }

    /// The profile holding contact `id`, or `nil` when there is no such contact.
    public func profile(containing id: Int) -> Profile? { graph.profile(containing: id) }
}
