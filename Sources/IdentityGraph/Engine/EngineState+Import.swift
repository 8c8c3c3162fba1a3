/// What bulk import (SPEC.md section 16) needs of the engine's state beyond identify.
extension EngineState {
    /// Records the keep-apart rule (`email`, `phone`), as an unmerge with `keepApart` does, and
    /// encodes it into the open batch. Returns false, changing nothing, when either value is carried
    /// by no live contact (a rule must name values that are). A rule that exists already is kept.
    /// Rules alone record no change event (SPEC.md section 13: events are about rows).
    mutating func addKeepApartRule(email: String, phone: String) -> Bool {
        guard let emailValue = graph.emailValue(email), let phoneValue = graph.phoneValue(phone) else { return false }
        var changes = GraphChanges()
        graph.addRule(email: emailValue, phone: phoneValue, now: tick(), changes: &changes)
        guard !changes.isEmpty else { return true }
        if persistent { graph.encode(changes, into: &openBatch) }
        lastChangedBatch = openBatchNumber
        return true
    }
}
