import Foundation
import Testing

/// The page at `GET /` in a real headless browser: `Tests/Browser/admin_page.py` drives Debian's
/// chromium through Playwright against the real server (both installed by `.ci/setup`).
@Suite(.timeLimit(.minutes(5))) struct BrowserTests {
    @Test("the admin page looks up, explains, unmerges and erases in a real browser")
    func adminPage() throws {
        // Tests/IdentityServerTests/BrowserTests.swift → the package root.
        let root = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let result = try runPython(["Tests/Browser/admin_page.py", ServerProcess.executable.path], directory: root)
        #expect(result.status == 0, "\(result.output)")
    }
}
