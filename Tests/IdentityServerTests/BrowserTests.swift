import Foundation
import Testing

/// The page at `GET /` in a real headless browser: `Tests/Browser/admin_page.py` drives Debian's
/// chromium through Playwright against the real server (both installed by `.ci/setup`).
@Suite struct BrowserTests {
    @Test("the admin page looks up, explains, unmerges and erases in a real browser")
    func adminPage() throws {
        // Tests/IdentityServerTests/BrowserTests.swift → the package root.
        let root = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "Tests/Browser/admin_page.py", ServerProcess.executable.path]
        process.currentDirectoryURL = root
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "\(output)")
    }
}
