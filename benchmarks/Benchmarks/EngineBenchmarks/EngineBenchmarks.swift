import Benchmark
import IdentityGraph

/// Micro-benchmarks of the engine's hot path, with ordo-one/benchmark:
/// `swift package --disable-sandbox benchmark --target EngineBenchmarks` from `benchmarks/`.
let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(metrics: [.wallClock, .throughput, .mallocCountTotal], maxDuration: .seconds(3))

    let known = Array(#"{"email":"customer42.0@example42.com","phoneNumber":"+15550000084"}"#.utf8)

    Benchmark("decode request JSON") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try IdentifyRequest(json: known))
        }
    }

    Benchmark("identify a known contact, response encoded (in memory)") { benchmark in
        let engine = IdentityEngine()
        let request = try IdentifyRequest(json: known)
        engine.identify(request) { _ in }
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            engine.identify(request) { result in blackHole(try? result.get().responseJSON) }
        }
    }

    Benchmark("identify a new contact each time (in memory)") { benchmark in
        let engine = IdentityEngine()
        let requests = try (0..<benchmark.scaledIterations.count).map {
            try IdentifyRequest(email: "new\($0)@example.com", phoneNumber: "\($0)")
        }
        benchmark.startMeasurement()
        for request in requests {
            engine.identify(request) { result in blackHole(result) }
        }
    }

    Benchmark("merge two profiles (in memory)") { benchmark in
        let engine = IdentityEngine()
        let count = benchmark.scaledIterations.count
        for index in 0..<(2 * count) {
            engine.identify(try IdentifyRequest(email: "m\(index)@example.com", phoneNumber: "\(index)")) { _ in }
        }
        let merges = try (0..<count).map {
            try IdentifyRequest(email: "m\(2 * $0)@example.com", phoneNumber: "\(2 * $0 + 1)")
        }
        benchmark.startMeasurement()
        for request in merges {
            engine.identify(request) { result in blackHole(result) }
        }
    }
}
