import Foundation
import Testing

/// A throwaway PostgreSQL server for the cluster tests (SPEC.md section 17): Debian's `postgresql`
/// (installed by `.ci/setup`), `initdb` into a temporary directory and started on a free loopback port,
/// as the `postgres` user when the tests run as root (PostgreSQL refuses root). Stopped and removed at
/// the end. A missing PostgreSQL is a failure that names the install command, never a skip.
final class PostgresServer: @unchecked Sendable {
    // `@unchecked`: every property is set in `init` and not changed afterwards.
    let directory: String
    let port: Int
    let password: String
    private let binaries: URL
    private let asPostgres: Bool

    struct Missing: Error, CustomStringConvertible {
        var description: String
    }

    /// The programs of PostgreSQL's that the tests run.
    static let programs = ["postgres", "initdb", "pg_ctl", "psql"]

    /// Where Debian installs the newest PostgreSQL's programs. Every one of ``programs`` must be there: a
    /// partial installation fails here, with the install command, not later as a program that would not
    /// start.
    static func binaries() throws -> URL {
        let root = URL(fileURLWithPath: "/usr/lib/postgresql")
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? [])
            .compactMap(Int.init).sorted()
        let install = "run .ci/setup --tests (apt-get install postgresql)"
        guard let newest = versions.last else { throw Missing(description: "PostgreSQL is not installed: \(install)") }
        let binaries = root.appendingPathComponent("\(newest)/bin")
        let missing = programs.filter { !FileManager.default.isExecutableFile(atPath: binaries.path + "/" + $0) }
        guard missing.isEmpty else {
            let lacking = missing.joined(separator: ", ")
            throw Missing(description: "PostgreSQL \(newest) lacks \(lacking) in \(binaries.path): \(install)")
        }
        return binaries
    }

    /// Starts a server whose `postgres` user has `password` (scram-sha-256 over TCP).
    init(password: String = "cluster-test-secret") throws {
        binaries = try Self.binaries()
        self.password = password
        asPostgres = getuid() == 0
        directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("identity-graph-pg-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try password.write(toFile: directory + "/pwfile", atomically: true, encoding: .utf8)
        if asPostgres {
            // Debian's postgresql package creates the user; PostgreSQL's programs alone are not enough as root.
            guard getpwnam("postgres") != nil else {
                throw Missing(
                    description: "there is no postgres user to run PostgreSQL as: run .ci/setup --tests (apt-get install postgresql)"
                )
            }
            let chown = try runProcess(URL(fileURLWithPath: "/bin/chown"), ["-R", "postgres", directory], timeout: 30)
            guard chown.status == 0 else { throw Missing(description: "chown postgres \(directory): \(chown.output)") }
        }
        port = try Self.freePort()
        let initdb = try run("initdb", [
            "-D", directory + "/data", "-U", "postgres", "--pwfile", directory + "/pwfile",
            "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--no-sync",
        ])
        guard initdb.status == 0 else { throw Missing(description: "initdb failed: \(initdb.output)") }
        try start()
    }

    /// `postgres://postgres:PASSWORD@127.0.0.1:PORT/postgres?sslmode=disable`, or with another password.
    func url(password: String? = nil, database: String = "postgres") -> String {
        "postgres://postgres:\(password ?? self.password)@127.0.0.1:\(port)/\(database)?sslmode=disable"
    }

    func start() throws {
        let started = try run("pg_ctl", [
            "-D", directory + "/data", "-l", directory + "/log", "-w", "-t", "60", "start",
            "-o", "-p \(port) -k \(directory) -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100",
        ])
        guard started.status == 0 else {
            let log = (try? String(contentsOfFile: directory + "/log", encoding: .utf8)) ?? ""
            throw Missing(description: "PostgreSQL did not start: \(started.output) \(log)")
        }
    }

    /// Stops the server (`fast`: connections are ended, committed data stays).
    func stop(mode: String = "fast") throws {
        _ = try run("pg_ctl", ["-D", directory + "/data", "-m", mode, "-w", "-t", "60", "stop"])
    }

    /// Runs SQL through `psql` over the local socket; returns its output.
    @discardableResult
    func sql(_ statement: String) throws -> String {
        let result = try run("psql", ["-h", directory, "-p", "\(port)", "-U", "postgres", "-At", "-c", statement])
        #expect(result.status == 0, "psql: \(result.output)")
        return result.output
    }

    /// Runs one of PostgreSQL's programs to its end. Through Python's `subprocess`, which closes every
    /// other descriptor in the child: Foundation's `Process` learns of an exit through a descriptor its
    /// child inherits, and the server that `pg_ctl start` leaves running would inherit it too, so that the
    /// exit of `pg_ctl` itself would never be seen.
    private func run(_ program: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let path = binaries.appendingPathComponent(program).path
        let command = asPostgres ? ["/usr/sbin/runuser", "-u", "postgres", "--", path] + arguments : [path] + arguments
        return try runPython(
            ["-c", "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"] + command, timeout: 120
        )
    }

    /// A port nothing listens on now, from the kernel.
    private static func freePort() throws -> Int {
        let socket = Foundation.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(socket) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(socket, pointer, length) == 0 && getsockname(socket, pointer, &length) == 0
            }
        }
        guard bound else { throw Missing(description: "no free port: errno \(errno)") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    deinit {
        _ = try? stop(mode: "immediate")
        try? FileManager.default.removeItem(atPath: directory)
    }
}
