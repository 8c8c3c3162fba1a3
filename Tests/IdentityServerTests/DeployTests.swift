import Foundation
import Testing

/// `deploy/identity-graph.service`, the systemd unit README.md's "Running under systemd" installs.
@Suite(.timeLimit(.minutes(5))) struct DeployTests {
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let installedBinary = "/usr/local/bin/identity-graph"

    /// `systemd-analyze verify` on a copy of the unit in a folder of its own. It fails a unit whose
    /// `ExecStart` binary does not exist ("Command ... is not executable"), which on a machine that
    /// has not installed identity-graph says nothing about the unit; so the copy runs the binary
    /// under test instead. Values it cannot parse (`ProtectSystem=strictly`) and unknown keys are
    /// only warnings, exit status 0: the output must be empty too.
    static func verify(_ unit: String) throws -> (status: Int32, output: String) {
        let directory = TemporaryDirectory()
        let path = directory.path + "/identity-graph.service"
        try unit.replacingOccurrences(of: installedBinary, with: ServerProcess.executable.path)
            .write(toFile: path, atomically: true, encoding: .utf8)
        return try runProcess(
            URL(fileURLWithPath: "/usr/bin/env"), ["systemd-analyze", "verify", "--man=no", path], timeout: 120
        )
    }

    @Test("systemd-analyze verify accepts the unit without a warning, and it has the hardening README promises")
    func unitVerifies() throws {
        let unit = try String(contentsOf: Self.root.appendingPathComponent("deploy/identity-graph.service"), encoding: .utf8)
        let lines = Set(unit.split(separator: "\n").map(String.init))
        for directive in [
            "ExecStart=\(Self.installedBinary) serve --data-dir /var/lib/identity-graph",
            "ExecReload=/bin/kill -HUP $MAINPID", "User=identity-graph", "ProtectSystem=strict",
            "ReadWritePaths=/var/lib/identity-graph", "NoNewPrivileges=yes", "PrivateTmp=yes", "ProtectHome=yes",
            "CapabilityBoundingSet=", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
            "SystemCallFilter=@system-service",
        ] {
            #expect(lines.contains(directive), "the unit lacks \(directive)")
        }
        let verified = try Self.verify(unit)
        #expect(verified.status == 0, "systemd-analyze (Debian's systemd; .ci/setup --tests): \(verified.output)")
        #expect(verified.output.isEmpty, "\(verified.output)")

        // The same check does catch a mistake: a value systemd cannot read is a warning it prints.
        let broken = try Self.verify(unit.replacingOccurrences(of: "ProtectSystem=strict", with: "ProtectSystem=strictly"))
        #expect(broken.output.contains("strictly"), "\(broken.output)")
        let missing = try runProcess(
            URL(fileURLWithPath: "/usr/bin/env"),
            ["systemd-analyze", "verify", "--man=no", Self.root.appendingPathComponent("deploy/identity-graph.service").path],
            timeout: 120
        )
        if !FileManager.default.fileExists(atPath: Self.installedBinary) {
            #expect(missing.status != 0 && missing.output.contains("not executable"), "\(missing.output)")
        }
    }
}
