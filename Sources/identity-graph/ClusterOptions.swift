import ArgumentParser
import IdentityCluster

/// The flags of cluster mode (SPEC.md section 17), each with its environment variable.
struct ClusterOptions: ParsableArguments {
    @Option(name: .customLong("cluster"), help: """
        Run as one server of a cluster on this PostgreSQL database: \
        postgres://user[:password]@host[:port]/db[?sslmode=disable|prefer|require]; the password may come \
        from PGPASSWORD (IDENTITY_GRAPH_CLUSTER).
        """)
    var url: String?

    @Option(help: "This server's name in the cluster, unique among live servers (IDENTITY_GRAPH_NODE_NAME; default HOST:HTTPPORT).")
    var nodeName: String?

    @Option(help: "How the other servers reach this one over HTTP (IDENTITY_GRAPH_ADVERTISE_HTTP; default http://HOST:HTTPPORT as bound).")
    var advertiseHttp: String?

    @Option(help: "How the other servers reach this one over the line protocol (IDENTITY_GRAPH_ADVERTISE_TCP; default HOST:TCPPORT as bound).")
    var advertiseTcp: String?

    @Option(help: "Seconds a leader's lease lasts unrenewed, 1 to 600 (IDENTITY_GRAPH_LEASE_TTL; default 5).")
    var leaseTtl: Int?

    @Option(help: "The PostgreSQL schema of the cluster's tables (IDENTITY_GRAPH_CLUSTER_SCHEMA; default identity_graph).")
    var clusterSchema: String?

    @Option(help: """
        Write a checkpoint of the store to PostgreSQL every N change events, 1 or more; a server with an \
        empty --data-dir joins from the newest (IDENTITY_GRAPH_CHECKPOINT_EVERY; default 1000000).
        """)
    var checkpointEvery: Int?

    /// The cluster configuration, or `nil` without `--cluster`. A bad value is a usage error naming its flag.
    func resolve(host: String, httpPort: Int, dataDirectory: String, changesRetained: Int) throws
        -> ClusterConfiguration?
    {
        guard let (url, source) = Setting.named(url, "--cluster", "IDENTITY_GRAPH_CLUSTER") else {
            for (value, flag) in [(nodeName, "--node-name"), (advertiseHttp, "--advertise-http"),
                                  (advertiseTcp, "--advertise-tcp"), (clusterSchema, "--cluster-schema")] where value != nil {
                throw ValidationError("\(flag) is for cluster mode: give --cluster URL too")
            }
            if checkpointEvery != nil { throw ValidationError("--checkpoint-every is for cluster mode: give --cluster URL too") }
            return nil
        }
        let ttl = try Setting.integer(leaseTtl, "IDENTITY_GRAPH_LEASE_TTL", default: 5, range: 1...600, flag: "--lease-ttl")
        let every = try Setting.integer(
            checkpointEvery, "IDENTITY_GRAPH_CHECKPOINT_EVERY", default: 1_000_000, range: 1...Int(Int64.max),
            flag: "--checkpoint-every"
        )
        // No flag: the part size only matters to tests, which split a small store into many parts.
        let partBytes = try Setting.integer(
            nil, "IDENTITY_GRAPH_CHECKPOINT_PART_BYTES", default: 4 << 20, range: 1024...(64 << 20),
            flag: "IDENTITY_GRAPH_CHECKPOINT_PART_BYTES"
        )
        let name = Setting.value(nodeName, "IDENTITY_GRAPH_NODE_NAME") ?? "\(host):\(httpPort)"
        if Setting.value(nodeName, "IDENTITY_GRAPH_NODE_NAME") == nil, httpPort == 0 {
            throw ValidationError("--http-port 0 picks a port at random: give --node-name NAME in cluster mode")
        }
        do {
            var configuration = try ClusterConfiguration(
                url: url, nodeName: name,
                advertisedHTTP: Setting.value(advertiseHttp, "IDENTITY_GRAPH_ADVERTISE_HTTP") ?? "",
                advertisedTCP: Setting.value(advertiseTcp, "IDENTITY_GRAPH_ADVERTISE_TCP") ?? "",
                leaseTTL: .seconds(ttl),
                schema: Setting.value(clusterSchema, "IDENTITY_GRAPH_CLUSTER_SCHEMA") ?? "identity_graph"
            )
            configuration.checkpointEvery = UInt64(every)
            configuration.checkpointPartBytes = partBytes
            configuration.changesRetained = UInt64(changesRetained)
            configuration.dataDirectory = dataDirectory
            return configuration
        } catch {
            throw ValidationError("\(source) \(error)")
        }
    }
}
