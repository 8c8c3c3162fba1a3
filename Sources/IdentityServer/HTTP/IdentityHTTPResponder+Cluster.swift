import Foundation
import HTTPTypes
import Hummingbird
import IdentityCluster
import IdentityGraph

/// Cluster mode over HTTP (SPEC.md section 17): what a server answers before it has caught up, where a
/// change goes when this server does not lead, `GET /cluster`, and `/healthz` with the role.
extension IdentityHTTPResponder {
    /// `Identity-Graph-Seq: N` (SPEC.md section 17): on an answer that reports a change, at least the seq
    /// of its change event; on any other, the newest event the answer reflects.
    static let seqHeader = HTTPField.Name("Identity-Graph-Seq")!

    /// Checks `operation` against this server's part in the cluster before it runs, and returns the
    /// leader's answer when it forwarded the request there. Nothing but `/healthz` and `/metrics` before
    /// the server has applied the log to its end once; a change on a follower goes to the leader (once:
    /// a forwarded request is never forwarded again); during an election a change gets `503`. A read
    /// with `minSeq` waits until that event is applied here.
    func admit(
        _ operation: HTTPOperation, _ request: Request, query: QueryParameters, in cluster: ClusterNode
    ) async throws -> Response? {
        if operation.name == "healthz" || operation.name == "metrics" { return nil }
        let forwarded = request.headers[ClusterForwarder.forwardedBy] != nil
        switch cluster.admission(writes: operation.writes, forwarded: forwarded) {
        case .serve:
            break
        case .refuse(let title, let detail):
            throw Problem(status: 503, title: title, detail: detail)
        case .forward(let leader, let http, _):
            guard let forwarder, let http, !http.isEmpty else {
                throw Problem(
                    status: 503, title: "Not the leader",
                    detail: "this server does not accept changes, and the leader \(leader) advertises no HTTP address"
                )
            }
            return try await forwarder.forward(request, maxBodyBytes: maxBodyBytes, leader: leader, to: http)
        }
        if let seq = try Self.minSeq(query), let problem = await ReadYourWrites.problem(waitingFor: seq, on: engine) {
            throw problem
        }
        return nil
    }

    /// The `minSeq` query parameter, when given: a whole number, at least 0.
    static func minSeq(_ query: QueryParameters) throws -> UInt64? {
        try parameter { () throws(RequestError) in
            try query.integer("minSeq", in: 0...Int.max).map { UInt64($0) }
        }
    }

    /// `GET /cluster`: this server's node, role, epoch, the leader and how far it has applied the log.
    func clusterStatus() async throws -> Response {
        guard let cluster else { throw Problem.notFound("this server does not run in cluster mode (--cluster)") }
        let status = cluster.status
        var writer = JSONWriter()
        writer.raw("{\"node\":")
        writer.string(status.node)
        writer.raw(",\"role\":")
        writer.string(status.role.rawValue)
        writer.raw(",\"epoch\":")
        writer.integer(Int(status.epoch))
        writer.raw(",\"leader\":")
        if let leader = status.leader {
            writer.raw("{\"node\":")
            writer.string(leader.node)
            writer.raw(",\"http\":")
            Self.write(leader.http, into: &writer)
            writer.raw(",\"tcp\":")
            Self.write(leader.tcp, into: &writer)
            writer.raw("}")
        } else {
            writer.raw("null")
        }
        writer.raw(",\"appliedSeq\":")
        writer.integer(await engine.latestSeq)
        writer.raw(",\"lagSeconds\":")
        writer.raw(String(format: "%.3f", status.lagSeconds).utf8)
        writer.raw("}")
        return Self.json(writer.bytes)
    }

    /// `/healthz` in cluster mode: `200` on a leader that accepts changes and on a follower that has
    /// caught up with the log, with its role and applied seq; `503` otherwise, saying why.
    func clusterHealth(_ cluster: ClusterNode) async -> Response {
        let status = cluster.status
        let accepts = await engine.acceptsChanges
        let refusal = await engine.refusal
        let seq = await engine.latestSeq
        let detail: String? = switch status.role {
        case .leader: accepts ? nil : "the leader cannot prove its lease or its store refuses changes"
        case .follower: status.caughtUp ? refusal.map { "the local copy refuses changes: \($0)" } : "catching up with the log"
        case .candidate: "no leader is known: an election is under way or PostgreSQL cannot be reached"
        }
        var writer = JSONWriter()
        writer.raw("{\"status\":")
        writer.string(detail == nil ? "ok" : "degraded")
        writer.raw(",\"role\":")
        writer.string(status.role.rawValue)
        writer.raw(",\"appliedSeq\":")
        writer.integer(seq)
        if let detail {
            writer.raw(",\"detail\":")
            writer.string(detail)
        }
        writer.raw("}")
        var response = Self.json(writer.bytes, status: detail == nil ? .ok : .serviceUnavailable)
        if detail != nil { response.headers[.retryAfter] = "1" }
        return response
    }

    private static func write(_ text: String?, into writer: inout JSONWriter) {
        if let text { writer.string(text) } else { writer.raw("null") }
    }
}
