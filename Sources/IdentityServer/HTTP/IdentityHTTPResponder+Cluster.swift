import Foundation
import HTTPTypes
import Hummingbird
import IdentityCluster
import IdentityGraph

/// Cluster mode over HTTP (SPEC.md section 17): what a server answers before it has caught up, where a
/// change goes when this server does not lead, `GET /cluster`, and `/healthz` with the role.
extension IdentityHTTPResponder {
    /// Checks `operation` against this server's part in the cluster before it runs: nothing but
    /// `/healthz` and `/metrics` before the server has applied the log to its end once, and no change
    /// on a server that does not lead.
    static func admit(_ operation: HTTPOperation, in cluster: ClusterNode) throws {
        if operation.name == "healthz" || operation.name == "metrics" { return }
        if let (title, detail) = cluster.refusal(writes: operation.writes) {
            throw Problem(status: 503, title: title, detail: detail)
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
