import ArgumentParser
import Foundation
import IdentityCluster
import IdentityGraph
import IdentityServer
import Logging
import NIOCore
import NIOSSL
import ServiceLifecycle
import UnixSignals

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve identify over HTTP and the line protocol on one store.",
        discussion: """
            Every option also reads an environment variable, named in its help. SIGINT and SIGTERM stop \
            accepting, let requests in flight finish, flush the store and exit 0.
            """
    )

    @Option(help: "The store's directory, created when missing (IDENTITY_GRAPH_DATA_DIR; default ./.identity-graph).")
    var dataDir: String?

    @Option(help: "The address both listeners bind (IDENTITY_GRAPH_HOST; default 127.0.0.1).")
    var host: String?

    @Option(help: "The HTTP port, 0 for any free one (IDENTITY_GRAPH_HTTP_PORT; default 8080).")
    var httpPort: Int?

    @Option(help: "The line-protocol port, 0 for any free one (IDENTITY_GRAPH_TCP_PORT; default 7070).")
    var tcpPort: Int?

    @Option(help: "Seconds without traffic before a connection is closed (IDENTITY_GRAPH_IDLE_TIMEOUT; default 60).")
    var idleTimeout: Int?

    @Option(help: "The largest HTTP body in bytes (IDENTITY_GRAPH_MAX_BODY_BYTES; default 65536).")
    var maxBodyBytes: Int?

    @Option(help: """
        'durable' (default): every answer is on disk before it is sent. 'relaxed': commits skip fsync, \
        so a power cut or kernel crash may lose recently acknowledged changes; a crash of the server \
        process alone loses nothing (IDENTITY_GRAPH_DURABILITY).
        """)
    var durability: String?

    @Option(help: """
        The first size of the store's memory map in bytes; it doubles whenever it fills \
        (IDENTITY_GRAPH_INITIAL_MAP_BYTES; default 67108864).
        """)
    var initialMapBytes: Int?

    @Option(help: "trace, debug, info, notice, warning, error or critical (IDENTITY_GRAPH_LOG_LEVEL; default info).")
    var logLevel: String?

    @Flag(help: "Record no metrics; GET /metrics answers 404 (IDENTITY_GRAPH_NO_METRICS=1).")
    var noMetrics = false

    @Option(help: "text, or json for one JSON object a line (IDENTITY_GRAPH_LOG_FORMAT; default text).")
    var logFormat: String?

    @OptionGroup var guardOptions: GuardOptions

    @OptionGroup(title: "Cluster mode") var clusterOptions: ClusterOptions

    @Option(help: "How many change events to keep, the newest (IDENTITY_GRAPH_CHANGES_RETAIN; default 10000000).")
    var changesRetain: Int?

    @Option(help: """
        A file of bearer tokens, one 'ROLE TOKEN' a line, ROLE read, write or admin; re-read on SIGHUP \
        (IDENTITY_GRAPH_AUTH_TOKENS). Without it every request is allowed, and serve binds only loopback \
        addresses unless --allow-unauthenticated is given.
        """)
    var authTokens: String?

    @Option(help: "A PEM certificate (chain): both listeners speak TLS only (IDENTITY_GRAPH_TLS_CERT; needs --tls-key).")
    var tlsCert: String?

    @Option(help: "The PEM private key of --tls-cert (IDENTITY_GRAPH_TLS_KEY).")
    var tlsKey: String?

    @Flag(help: "Serve without tokens on an address other than loopback (IDENTITY_GRAPH_ALLOW_UNAUTHENTICATED=1).")
    var allowUnauthenticated = false

    @Flag(help: """
        Identify answers also carry "primaryContatctId" (the misspelling in the original Bitespeed task that \
        many clients read), with the same value (IDENTITY_GRAPH_BITESPEED_COMPAT=1).
        """)
    var bitespeedCompat = false

    @Option(help: """
        Seconds a change stream (GET /changes as text/event-stream) may stay silent before a comment \
        line, 1 to 15 (IDENTITY_GRAPH_CHANGES_HEARTBEAT; default 15).
        """)
    var changesHeartbeat: Int?

    @Option(help: """
        Write the server's pid to this file once it listens, and remove it at a clean exit, for \
        `kill -HUP "$(cat FILE)"` (IDENTITY_GRAPH_PID_FILE).
        """)
    var pidFile: String?

    func run() async throws {
        // The log format first: with json, every later fatal error is a JSON line like the log's.
        let logFormat = Setting.named(logFormat, "--log-format", "IDENTITY_GRAPH_LOG_FORMAT") ?? ("text", "--log-format")
        guard logFormat.value == "text" || logFormat.value == "json" else {
            throw ValidationError("\(logFormat.name) must be text or json, not '\(logFormat.value)'")
        }
        FatalReport.useJSON(logFormat.value == "json")
        let dataDirectory = try Setting.dataDirectory(dataDir, required: false)
        let host = Setting.value(host, "IDENTITY_GRAPH_HOST") ?? "127.0.0.1"
        let httpPort = try Setting.integer(
            httpPort, "IDENTITY_GRAPH_HTTP_PORT", default: 8080, range: 0...65535, flag: "--http-port"
        )
        let tcpPort = try Setting.integer(
            tcpPort, "IDENTITY_GRAPH_TCP_PORT", default: 7070, range: 0...65535, flag: "--tcp-port"
        )
        let idle = try Setting.integer(
            idleTimeout, "IDENTITY_GRAPH_IDLE_TIMEOUT", default: 60, range: 1...86_400, flag: "--idle-timeout"
        )
        let maxBody = try Setting.integer(
            maxBodyBytes, "IDENTITY_GRAPH_MAX_BODY_BYTES", default: 65_536, range: 1...(64 << 20),
            flag: "--max-body-bytes"
        )
        let initialMap = try Setting.integer(
            initialMapBytes, "IDENTITY_GRAPH_INITIAL_MAP_BYTES", default: 64 << 20, range: (64 << 10)...(1 << 40),
            flag: "--initial-map-bytes"
        )
        let durabilitySetting = Setting.named(durability, "--durability", "IDENTITY_GRAPH_DURABILITY")
        let durabilityName = durabilitySetting?.value ?? "durable"
        guard durabilityName == "durable" || durabilityName == "relaxed" else {
            throw ValidationError(
                "\(durabilitySetting?.name ?? "--durability") must be 'durable' or 'relaxed', not '\(durabilityName)'"
            )
        }
        let (guards, blocklistPath) = try guardOptions.resolve()
        let retain = try Setting.integer(
            changesRetain, "IDENTITY_GRAPH_CHANGES_RETAIN", default: 10_000_000, range: 1...Int(Int64.max),
            flag: "--changes-retain"
        )
        let heartbeatSeconds = try Setting.integer(
            changesHeartbeat, "IDENTITY_GRAPH_CHANGES_HEARTBEAT", default: 15, range: 1...15, flag: "--changes-heartbeat"
        )
        let limits = guards.limits
        let tokensSetting = Setting.named(authTokens, "--auth-tokens", "IDENTITY_GRAPH_AUTH_TOKENS")
        let tokensPath = tokensSetting?.value
        var tokens: TokenTable?
        if let tokensSetting {
            do {
                tokens = try TokenTable(contentsOfFile: tokensSetting.value)
            } catch {
                throw ValidationError("\(tokensSetting.name): \(error)")
            }
        }
        let allowOpen = Setting.flag(allowUnauthenticated, "IDENTITY_GRAPH_ALLOW_UNAUTHENTICATED")
        if tokens == nil, !allowOpen, !Self.isLoopback(host) {
            throw ValidationError("""
                refusing to serve \(host) without access control: anyone who can reach it could read and \
                change every profile. Give --auth-tokens FILE (one 'ROLE TOKEN' a line), or \
                --allow-unauthenticated if the network itself is trusted.
                """)
        }
        let access = AccessControl(tokens: tokens)
        var tls: NIOSSLContext?
        switch (Setting.value(tlsCert, "IDENTITY_GRAPH_TLS_CERT"), Setting.value(tlsKey, "IDENTITY_GRAPH_TLS_KEY")) {
        case (nil, nil):
            break
        case (let cert?, let key?):
            do {
                tls = try ServerConfiguration.tls(certificateFile: cert, keyFile: key)
            } catch {
                throw ValidationError("TLS: \(error)")
            }
        default:
            throw ValidationError("--tls-cert and --tls-key go together: give both PEM files, or neither")
        }
        // Fail at start, not at the first request, if the OpenAPI document did not ship with the binary.
        _ = OpenAPIDocument.bytes
        let levelSetting = Setting.named(logLevel, "--log-level", "IDENTITY_GRAPH_LOG_LEVEL")
        guard let level = Logger.Level(rawValue: levelSetting?.value ?? "info") else {
            throw ValidationError(
                "\(levelSetting?.name ?? "--log-level") must be one of trace, debug, info, notice, warning, error, critical"
            )
        }
        let pidPath = Setting.value(pidFile, "IDENTITY_GRAPH_PID_FILE")

        LoggingSystem.bootstrap { label in
            if logFormat.value == "json" {
                var handler = JSONLogHandler(label: label)
                handler.logLevel = level
                return handler
            }
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var logger = Logger(label: "identity-graph")
        logger.logLevel = level

        var configuration = ServerConfiguration(
            host: host, httpPort: httpPort, tcpPort: tcpPort, maxBodyBytes: maxBody, idleTimeout: .seconds(Int64(idle)),
            changesHeartbeat: .seconds(heartbeatSeconds), tls: tls
        )
        configuration.bitespeedCompat = Setting.flag(bitespeedCompat, "IDENTITY_GRAPH_BITESPEED_COMPAT")
        let clusterConfiguration = try clusterOptions.resolve(
            host: host, httpPort: httpPort, dataDirectory: dataDirectory, changesRetained: retain
        )
        // Before the store is touched: a port in use must leave no new store directory behind, and
        // must be reported as such rather than as the listeners' own errors.
        do {
            try await IdentityServer.checkPortsAreFree(configuration)
        } catch {
            throw CommandFailure(message: "\(error)")
        }

        // One writer per store (SPEC.md section 8), taken before the store is created or opened.
        let writerLock = try WriterLock(directory: dataDirectory)
        defer { writerLock.release() }

        let storeLogger = logger
        let metrics = ServerMetrics(enabled: !Setting.flag(noMetrics, "IDENTITY_GRAPH_NO_METRICS"))
        // Cluster mode: the database client runs for as long as the server, and the leader's batches go
        // through it to the log before they are acknowledged.
        let database: ClusterDatabase?
        do {
            database = try clusterConfiguration.map { try ClusterDatabase(configuration: $0, logger: logger) }
        } catch {
            throw CommandFailure(message: "--cluster: cannot set up TLS for PostgreSQL: \(error)")
        }
        var joined = false
        // The index image that came with the checkpoint, for the engine to load instead of a rebuild.
        var joinedImage: IndexImageBytes?
        if let database {
            // A server with an empty data directory joins from the newest checkpoint, when PostgreSQL can
            // be reached now; otherwise it starts empty and reads the log from its start (or, if the log
            // was pruned meanwhile, stops and says so: a restart then joins).
            do {
                if let join = try await ClusterNode.join(database: database, directory: dataDirectory, logger: logger) {
                    joined = true
                    joinedImage = join.image
                }
            } catch {
                logger.warning(
                    "cannot join from a checkpoint now; starting from the local copy",
                    metadata: ["error": "\(ClusterNode.describe(error))"]
                )
            }
        }
        // A store that a join installed but never synced may have holes: it is never opened as it is (a
        // cluster server discards it and joins again, above; without --cluster it is refused).
        if !joined, LocalCopy.hasUnfinishedJoin(dataDirectory) {
            guard database == nil else {
                throw CommandFailure(
                    message: "\(dataDirectory) holds a checkpoint that a join installed but never synced to disk, "
                        + "and it could not be thrown away (see the log): empty the directory"
                )
            }
            try refuseUnfinishedJoin(dataDirectory)
        }
        let engine: IdentityEngine
        do {
            engine = try IdentityEngine(
                dataDirectory: dataDirectory,
                options: .init(
                    initialMapSize: initialMap, durable: durabilityName == "durable",
                    guards: guards, changesRetained: retain,
                    onStorageEvent: { event in
                        switch event {
                        case .upgraded(let from, let to, let links):
                            storeLogger.notice(
                                "upgraded the store's format in place",
                                metadata: ["from": "\(from)", "to": "\(to)", "linksDerived": .stringConvertible(links)]
                            )
                        case .writeFailed(let error):
                            storeLogger.error("store write failed; refusing changes until a retry succeeds: \(error)")
                        case .recovered:
                            storeLogger.notice("store writes succeed again; accepting changes")
                        case .fenced(let epoch):
                            storeLogger.warning(
                                "the log refused a batch: another server took the lease; following",
                                metadata: ["epoch": "\(epoch)"]
                            )
                        }
                    },
                    onCommit: { rows, seconds in metrics.recordCommit(rows: rows, seconds: seconds) },
                    replicator: database?.replicator,
                    image: joinedImage
                )
            )
            joinedImage = nil
        } catch {
            throw CommandFailure(message: error.message)
        }
        let statistics = await engine.statistics
        logger.info(
            "opened store",
            metadata: [
                "dataDir": "\(dataDirectory)", "contacts": .stringConvertible(statistics.contacts),
                "profiles": .stringConvertible(statistics.profiles), "durability": "\(durabilityName)",
            ]
        )
        switch engine.indexOrigin {
        // (Saved at the last clean stop, or come with the checkpoint a join installed.)
        case .image: logger.info("loaded the index from its saved image")
        case .rebuilt(let reason): logger.notice("rebuilt the index from the store", metadata: ["reason": "\(reason)"])
        }
        if durabilityName == "relaxed" {
            logger.warning("relaxed durability: a power cut may lose recently acknowledged changes")
        }
        if let blocklistPath {
            logger.info(
                "blocklist loaded",
                metadata: ["rules": .stringConvertible(guards.blocklist.ruleCount), "file": "\(blocklistPath)"]
            )
        }
        if let tokens {
            logger.info("access control on", metadata: ["tokens": .stringConvertible(tokens.count)])
        }
        for warning in Self.exposureWarnings(host: host, tokens: tokens != nil, tls: tls != nil, allowOpen: allowOpen) {
            logger.warning("\(warning)")
        }

        var clusterNode: ClusterNode?
        if let clusterConfiguration, let database {
            let node = ClusterNode(database: database, engine: engine, logger: logger)
            logger.info(
                "cluster mode",
                metadata: ["database": "\(clusterConfiguration.databaseDescription)", "node": "\(clusterConfiguration.nodeName)"]
            )
            do {
                // One try now, so that a refusal comes before the listeners start; an unreachable
                // database is retried by the node while the listeners answer 503.
                try await node.prepare(retrying: false)
            } catch let refusal as ClusterNode.Refusal {
                engine.close()
                await database.close()
                throw ClusterRefusal(message: refusal.description)
            }
            configuration.cluster = node
            database.observeAppends { metrics.recordAppend($0) }
            let certificate = Setting.value(tlsCert, "IDENTITY_GRAPH_TLS_CERT")
            configuration.forwarder = ClusterForwarder(
                node: clusterConfiguration.nodeName, tls: tls == nil ? nil : Self.forwardingTLS(trusting: certificate),
                logger: logger
            )
            clusterNode = node
        }
        // The checkpoint a join installed goes to disk once the node has caught up (see syncJoin).
        let joinSync = joined ? clusterNode?.syncJoin(in: dataDirectory) : nil
        defer { joinSync?.cancel() }

        let reloader = Task { [logger] in
            for await _ in await UnixSignalsSequence(trapping: .sighup) {
                if blocklistPath == nil && tokensPath == nil {
                    logger.notice("SIGHUP: nothing to reload (neither --blocklist nor --auth-tokens is given)")
                }
                if let blocklistPath {
                    do {
                        let reloaded = try Blocklist(contentsOfFile: blocklistPath)
                        await engine.updateGuards(Guards(blocklist: reloaded, limits: limits))
                        metrics.recordReload(.blocklist, succeeded: true)
                        logger.notice(
                            "blocklist reloaded",
                            metadata: ["rules": .stringConvertible(reloaded.ruleCount), "file": "\(blocklistPath)"]
                        )
                    } catch {
                        metrics.recordReload(.blocklist, succeeded: false)
                        logger.error("blocklist reload failed; the previous rules stay in force: \(error)")
                    }
                }
                if let tokensPath {
                    do {
                        let reloaded = try TokenTable(contentsOfFile: tokensPath)
                        let closed = access.reload(reloaded)
                        metrics.recordReload(.tokens, succeeded: true)
                        logger.notice(
                            "tokens reloaded",
                            metadata: [
                                "tokens": .stringConvertible(reloaded.count), "closedConnections": .stringConvertible(closed),
                                "file": "\(tokensPath)",
                            ]
                        )
                    } catch {
                        // The error names the file and line, never the line's text, which may hold a token.
                        metrics.recordReload(.tokens, succeeded: false)
                        logger.error("token reload failed; the previous tokens stay in force: \(error)")
                    }
                }
            }
        }
        defer { reloader.cancel() }

        let services = try IdentityServer.services(
            engine: engine, configuration: configuration, access: access, metrics: metrics, logger: logger
        ) { [logger, clusterNode, scheme = tls == nil ? "http" : "https"] bound in
            clusterNode?.listening(
                http: "\(scheme)://\(Self.describe(bound.http, host: host))",
                tcp: Self.describe(bound.tcp, host: host)
            )
            if let pidPath {
                // Written once the server listens, so that a script that waits for the file can signal it.
                do {
                    try "\(getpid())\n".write(toFile: pidPath, atomically: true, encoding: .utf8)
                } catch {
                    logger.error("cannot write the pid file \(pidPath): \(error.localizedDescription)")
                }
            }
            let lines = "http listening on \(Self.describe(bound.http, host: host))\n"
                + "tcp listening on \(Self.describe(bound.tcp, host: host))\n"
            FileHandle.standardOutput.write(Data(lines.utf8))
        }
        defer { if let pidPath { try? FileManager.default.removeItem(atPath: pidPath) } }
        let group = ServiceGroup(
            configuration: .init(
                services: services + (clusterNode.map { [$0] } ?? []), gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        do {
            try await group.run()
        } catch let refusal as ClusterNode.Refusal {
            engine.close()
            await database?.close()
            throw ClusterRefusal(message: refusal.description)
        } catch {
            engine.close()
            await database?.close()
            throw CommandFailure(message: Self.describeFailure(error, configuration))
        }
        let flushFailure = engine.close()
        await database?.close()
        // A clean stop right after a join, before the background sync removed the join's marker: the
        // store is flushed now, so the marker goes too (else the next start would join again).
        if flushFailure == nil, LocalCopy.hasUnfinishedJoin(dataDirectory) {
            do {
                try LocalCopy.finishJoin(in: dataDirectory)
            } catch {
                logger.warning("cannot sync the joined checkpoint to disk; the next start joins again: \(error)")
            }
        }
        // The store refuses changes while a commit fails; those never reached the disk, and the
        // shutdown line must not say otherwise.
        if let refusal = await engine.refusal {
            logger.error("stopped; the store was not flushed: its last commit failed (\(refusal))")
        } else if let flushFailure {
            logger.error("stopped; the store was not flushed: \(flushFailure)")
        } else {
            logger.info("stopped; store flushed")
        }
        switch engine.savedIndexImage {
        case .success(let bytes): logger.info("saved the index for the next start", metadata: ["bytes": "\(bytes)"])
        case .failure(let error): logger.warning("could not save the index; the next start rebuilds it: \(error)")
        case nil: break
        }
    }

    /// The warnings a start-up owes an operator whose server is reachable from other machines:
    /// bearer tokens sent in plain text, or no access control at all.
    static func exposureWarnings(host: String, tokens: Bool, tls: Bool, allowOpen: Bool) -> [String] {
        guard !isLoopback(host) else { return [] }
        if tokens && !tls {
            return [
                "bearer tokens travel in plain text: \(host) is reachable from other machines and no --tls-cert "
                    + "is given, so anyone on the network path can read the tokens"
            ]
        }
        if !tokens && allowOpen {
            return [
                "--allow-unauthenticated on \(host): anyone who can reach it can read, change and erase every profile"
            ]
        }
        return []
    }

    /// A listener that failed after the ports were found free (another process took one meanwhile).
    private static func describeFailure(_ error: any Error, _ configuration: ServerConfiguration) -> String {
        if let error = error as? IOError, error.errnoCode == EADDRINUSE {
            return "http port \(configuration.httpPort) or tcp port \(configuration.tcpPort) is in use"
        }
        return "\(error)"
    }

    /// How a follower speaks TLS to the leader when the servers speak TLS: the system's trusted roots, and
    /// the certificates of this server's own `--tls-cert` file, so that servers sharing one certificate,
    /// or whose file carries the chain up to a private CA, reach each other without more settings.
    static func forwardingTLS(trusting certificateFile: String?) -> TLSConfiguration {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        if let certificateFile { configuration.additionalTrustRoots = [.file(certificateFile)] }
        return configuration
    }

    /// Whether `host` names only this machine: `localhost`, 127.0.0.0/8 or ::1.
    static func isLoopback(_ host: String) -> Bool {
        if host == "localhost" || host == "::1" || host == "[::1]" { return true }
        let parts = host.split(separator: ".")
        return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { UInt8($0) != nil }
    }

    /// `HOST:PORT`, with an IPv6 address in brackets (`[::1]:8080`) so that the port stays apart.
    static func describe(_ address: SocketAddress, host: String) -> String {
        let ip = address.ipAddress ?? host
        if case .v6 = address, !ip.hasPrefix("[") { return "[\(ip)]:\(address.port ?? 0)" }
        return "\(ip):\(address.port ?? 0)"
    }
}
