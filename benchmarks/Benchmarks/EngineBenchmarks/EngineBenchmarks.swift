import Benchmark
import IdentityGraph

/// Micro-benchmarks of the engine's hot path, with ordo-one/benchmark, from `benchmarks/`:
///
///     swift package --disable-sandbox benchmark --target EngineBenchmarks                     # run
///     swift package --disable-sandbox benchmark thresholds check --target EngineBenchmarks    # against Thresholds/
///     swift package --disable-sandbox --allow-writing-to-package-directory \
///         benchmark thresholds update --target EngineBenchmarks                              # after a deliberate change
///
/// The committed `Thresholds/` hold each benchmark's figures; `thresholds check` exits 2 on a regression beyond
/// the tolerances below. Wall-clock time moves ±25% on this shared machine, so it gets a wide tolerance; malloc
/// counts are exact, so they get a tight one and catch most regressions on their own.
let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        maxDuration: .seconds(3),
        thresholds: [
            .wallClock: .init(relative: [.p50: 35.0]),
            .throughput: .init(relative: [.p50: 35.0]),
            .mallocCountTotal: .init(relative: [.p50: 5.0], absolute: [.p50: 2]),
        ]
    )

    let known = Array(#"{"email":"customer42.0@example42.com","phoneNumber":"+15550000084"}"#.utf8)
    var head = JSONWriter()
    head.raw("{\"contact\":")
    let answerHead = head

    /// Hands `requests` to the engine in one call, as the line protocol does for one read, and waits.
    @Sendable func submit(_ engine: IdentityEngine, _ requests: [IdentityEngine.BatchedRequest]) async {
        let answers = await withCheckedContinuation { continuation in
            engine.submit(requests) { continuation.resume(returning: $0) }
        }
        blackHole(answers)
    }

    Benchmark("decode request JSON") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try IdentifyRequest(json: known))
        }
    }

    Benchmark("identify a known contact, one call each, as HTTP does (in memory)") { benchmark async throws in
        let engine = IdentityEngine()
        let request = try IdentifyRequest(json: known)
        _ = try await engine.identify(request)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            blackHole(try await engine.identifyResponseBody(request))
        }
    }

    Benchmark("identify 64 known contacts in one call, as a pipelined read does (in memory)") { benchmark async throws in
        let engine = IdentityEngine()
        let request = try IdentifyRequest(json: known)
        _ = try await engine.identify(request)
        let batch = Array(repeating: IdentityEngine.BatchedRequest.identify(request, dryRun: false, head: answerHead), count: 64)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            await submit(engine, batch)
        }
    }

    Benchmark("identify 64 new contacts in one call (in memory)") { benchmark async throws in
        let engine = IdentityEngine()
        let batches = try (0..<benchmark.scaledIterations.count).map { round in
            try (0..<64).map { index -> IdentityEngine.BatchedRequest in
                let id = round * 64 + index
                let request = try IdentifyRequest(email: "new\(id)@example.com", phoneNumber: "\(id)")
                return .identify(request, dryRun: false, head: answerHead)
            }
        }
        benchmark.startMeasurement()
        for batch in batches {
            await submit(engine, batch)
        }
    }

    Benchmark("merge 64 pairs of profiles in one call (in memory)") { benchmark async throws in
        let engine = IdentityEngine()
        let count = benchmark.scaledIterations.count * 64
        for start in stride(from: 0, to: 2 * count, by: 1024) {
            await submit(engine, try (start..<min(start + 1024, 2 * count)).map {
                .identify(try IdentifyRequest(email: "m\($0)@example.com", phoneNumber: "\($0)"), dryRun: false, head: answerHead)
            })
        }
        let batches = try (0..<benchmark.scaledIterations.count).map { round in
            try (0..<64).map { index -> IdentityEngine.BatchedRequest in
                let pair = round * 64 + index
                let request = try IdentifyRequest(email: "m\(2 * pair)@example.com", phoneNumber: "\(2 * pair + 1)")
                return .identify(request, dryRun: false, head: answerHead)
            }
        }
        benchmark.startMeasurement()
        for batch in batches {
            await submit(engine, batch)
        }
    }
}
