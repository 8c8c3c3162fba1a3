import Foundation
import Testing

/// Everything a child process writes to one pipe, read on a thread of its own as it arrives: a
/// chatty child never blocks on a full pipe, and a test can wait for a line with a deadline.
final class PipeCollector: @unchecked Sendable {
    // @unchecked: `bytes` and `ended` are touched only with `condition` locked.
    let pipe = Pipe()
    private let condition = NSCondition()
    private var bytes: [UInt8] = []
    private var ended = false

    /// Starts reading; call it once the pipe has been handed to the child.
    func start() {
        let handle = pipe.fileHandleForReading
        Thread { [self] in
            while true {
                let chunk = handle.availableData
                condition.lock()
                if chunk.isEmpty { ended = true } else { bytes += chunk }
                condition.broadcast()
                condition.unlock()
                if chunk.isEmpty { return }
            }
        }.start()
    }

    /// What has been written so far.
    var text: String {
        condition.lock()
        defer { condition.unlock() }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Waits until `done(text, ended)` holds, where `ended` says the child closed the pipe (it
    /// exited). Gives up at `deadline`, after one last look; returns whether it held.
    func wait(until deadline: Date, for done: (_ text: String, _ ended: Bool) -> Bool) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while !done(String(decoding: bytes, as: UTF8.self), ended) {
            if !condition.wait(until: deadline) { return done(String(decoding: bytes, as: UTF8.self), ended) }
        }
        return true
    }

    /// Waits for the end of the output (the child has exited), at most `seconds`; returns whether it came.
    func waitForEnd(seconds: Double) -> Bool {
        wait(until: Date().addingTimeInterval(seconds)) { $1 }
    }
}

/// Set once a child process has exited (from its `terminationHandler`); waits on it have deadlines.
final class ExitSignal: @unchecked Sendable {
    // @unchecked: `exited` is touched only with `condition` locked.
    private let condition = NSCondition()
    private var exited = false

    /// Makes `process` signal this when it exits; call it before `process.run()`.
    init(_ process: Process) {
        process.terminationHandler = { [self] _ in
            condition.lock()
            exited = true
            condition.broadcast()
            condition.unlock()
        }
    }

    /// Waits at most `seconds` for the exit; returns whether it came.
    func wait(seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        condition.lock()
        defer { condition.unlock() }
        while !exited {
            if !condition.wait(until: deadline) { return exited }
        }
        return true
    }
}

/// Runs `executable` with `arguments` to its end and returns its exit status and what it wrote
/// (standard output and standard error together). A child still running after `timeout` seconds
/// is killed and the test fails saying so, so a hung child cannot hang the suite.
func runProcess(
    _ executable: URL,
    _ arguments: [String],
    environment: [String: String] = [:],
    input: Data? = nil,
    directory: URL? = nil,
    timeout: Double = 300,
    sourceLocation: SourceLocation = #_sourceLocation
) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    var variables = ProcessInfo.processInfo.environment
    variables.merge(environment) { $1 }
    process.environment = variables
    if let directory { process.currentDirectoryURL = directory }
    let output = PipeCollector()
    process.standardOutput = output.pipe
    process.standardError = output.pipe
    let inputPipe = input.map { _ in Pipe() }
    if let inputPipe { process.standardInput = inputPipe }
    let exited = ExitSignal(process)
    try process.run()
    output.start()
    if let inputPipe, let input {
        // On a thread of its own: a child that writes before it has read everything must not deadlock.
        Thread {
            inputPipe.fileHandleForWriting.write(input)
            try? inputPipe.fileHandleForWriting.close()
        }.start()
    }
    let command = ([executable.lastPathComponent] + arguments).joined(separator: " ")
    if !exited.wait(seconds: timeout) {
        kill(process.processIdentifier, SIGKILL)
        _ = exited.wait(seconds: 30)
        _ = output.waitForEnd(seconds: 10)
        Issue.record("`\(command)` did not finish within \(Int(timeout)) s and was killed; it wrote: \(output.text)",
                     sourceLocation: sourceLocation)
        return (process.terminationStatus, output.text)
    }
    // The child has exited; its output ends once every process that shared the pipe has too.
    if !output.waitForEnd(seconds: 30) {
        Issue.record("`\(command)` exited but its output did not end within 30 s", sourceLocation: sourceLocation)
    }
    return (process.terminationStatus, output.text)
}

/// Runs `python3` (through `env`, so the one on `PATH`) with `arguments`; see ``runProcess``.
func runPython(
    _ arguments: [String], input: Data? = nil, directory: URL? = nil, timeout: Double = 300,
    sourceLocation: SourceLocation = #_sourceLocation
) throws -> (status: Int32, output: String) {
    try runProcess(
        URL(fileURLWithPath: "/usr/bin/env"), ["python3"] + arguments, input: input, directory: directory,
        timeout: timeout, sourceLocation: sourceLocation
    )
}

/// Runs the executable with `arguments` and returns its exit status and combined output.
func runIdentityGraph(
    _ arguments: [String], environment: [String: String] = [:], timeout: Double = 300,
    sourceLocation: SourceLocation = #_sourceLocation
) throws -> (status: Int32, output: String) {
    try runProcess(
        ServerProcess.executable, arguments, environment: environment, timeout: timeout, sourceLocation: sourceLocation
    )
}

/// Polls `condition` every millisecond until it holds, for at most `seconds`, then looks once more;
/// returns whether it held. For events of the test's own threads that have nothing to wait on.
func waitUntil(seconds: Double = 60, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while !condition() {
        if Date() >= deadline { return condition() }
        usleep(1000)
    }
    return true
}
