#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// The standard process metrics of Prometheus' client libraries (`process_cpu_seconds_total`,
/// `process_resident_memory_bytes`, ...), read from `/proc` at each scrape, so that dashboards built
/// for any Prometheus-instrumented process work unchanged. Empty where there is no `/proc`.
struct ProcessFigures: Sendable {
    private let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))
    private let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
    /// When the process started, in seconds since 1970: the boot time plus the start tick.
    private let startTime: Double?

    init() {
        let fields = Self.statFields()
        let bootTime = (try? String(contentsOfFile: "/proc/stat", encoding: .utf8))?
            .split(separator: "\n").first { $0.hasPrefix("btime ") }
            .flatMap { Double($0.dropFirst("btime ".count)) }
        if let fields, fields.count > 19, let ticks = Double(fields[19]), let bootTime {
            startTime = bootTime + ticks / ticksPerSecond
        } else {
            startTime = nil
        }
    }

    /// The fields of `/proc/self/stat` after the command name, so that index 0 is field 3 (`state`)
    /// of proc(5): the name is in parentheses and may itself hold spaces.
    private static func statFields() -> [Substring]? {
        guard let text = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
            let end = text.lastIndex(of: ")")
        else { return nil }
        return text[text.index(after: end)...].split(separator: " ")
    }

    /// The figures in Prometheus' text format, each with its `# HELP` and `# TYPE` lines.
    func text() -> String {
        var text = ""
        func family(_ name: String, _ type: String, _ help: String, _ value: String) {
            text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n\(name) \(value)\n"
        }
        if let fields = Self.statFields(), fields.count > 21,
            let user = Double(fields[11]), let system = Double(fields[12]),
            let virtual = Int(fields[20]), let resident = Int(fields[21])
        {
            family(
                "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.",
                "\((user + system) / ticksPerSecond)"
            )
            family("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", "\(virtual)")
            family(
                "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", "\(resident * pageSize)"
            )
        }
        if let descriptors = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") {
            // Listing the folder opens one descriptor of its own, which it closes again.
            family("process_open_fds", "gauge", "Number of open file descriptors.", "\(max(0, descriptors.count - 1))")
        }
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur != rlim_t.max {
            family("process_max_fds", "gauge", "Maximum number of open file descriptors.", "\(limit.rlim_cur)")
        }
        if let startTime {
            family(
                "process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.",
                "\(startTime)"
            )
        }
        return text
    }
}
