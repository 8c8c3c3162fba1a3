import Foundation
import Testing
@testable import IdentityGraph
import ConformanceSupport

/// The links and keep-apart rules as arrays and chains (``ValuePairs``), against a plain model.
@Suite struct ValuePairsTests {
    /// What the pairs must answer, kept the obvious way.
    struct Model {
        var pairs: [UInt64: ValuePairs.Pair] = [:]
        var next: UInt64 = 1

        func numbers(email: Int) -> [UInt64] { pairs.filter { $0.value.email == email }.keys.sorted() }
        func numbers(phone: Int) -> [UInt64] { pairs.filter { $0.value.phone == phone }.keys.sorted() }
    }

    private func expectSame(_ pairs: ValuePairs, _ model: Model, values: Int) {
        #expect(pairs.count == model.pairs.count)
        #expect(pairs.nextNumber == model.next)
        #expect(pairs.ordered.map(\.number) == model.pairs.keys.sorted())
        for number in 0...model.next { #expect(pairs[number] == model.pairs[number]) }
        for value in 0..<values {
            #expect(pairs.numbers(email: value) == model.numbers(email: value))
            #expect(pairs.numbers(phone: value) == model.numbers(phone: value))
            for phone in 0..<values {
                let expected = model.numbers(email: value).first { model.pairs[$0]!.phone == phone }
                #expect(pairs.find(email: value, phone: phone) == expected)
            }
        }
    }

    @Test("random adds and removes answer as a dictionary of pairs would, also after an image round trip")
    func randomOperations() throws {
        var random = SeededGenerator(seed: 5)
        var pairs = ValuePairs()
        var model = Model()
        let values = 6
        for step in 0..<600 {
            if model.pairs.isEmpty || Int.random(in: 0..<3, using: &random) > 0 {
                let pair = ValuePairs.Pair(
                    email: Int.random(in: 0..<values, using: &random), phone: Int.random(in: 0..<values, using: &random),
                    at: Int64(step)
                )
                let number = pairs.add(email: pair.email, phone: pair.phone, at: pair.at)
                #expect(number == model.next)
                model.pairs[number] = pair
                model.next += 1
            } else {
                let number = model.pairs.keys.sorted()[Int.random(in: 0..<model.pairs.count, using: &random)]
                pairs.remove(number)
                model.pairs[number] = nil
            }
            if step % 50 == 0 { expectSame(pairs, model, values: values) }
        }
        // The newest pairs removed: their numbers stay taken, across an image too.
        for number in model.pairs.keys.sorted().suffix(3) {
            pairs.remove(number)
            model.pairs[number] = nil
        }
        expectSame(pairs, model, values: values)
        expectSame(try roundTrip(pairs), model, values: values)
    }

    @Test("pairs read back from the store in number order, with gaps, chain in number order")
    func loadedWithGaps() {
        var pairs = ValuePairs()
        var model = Model()
        for (number, email, phone) in [(3, 1, 1), (4, 1, 2), (9, 2, 1), (10, 1, 1)] as [(UInt64, Int, Int)] {
            let pair = ValuePairs.Pair(email: email, phone: phone, at: Int64(number))
            pairs.insert(number, pair)
            model.pairs[number] = pair
        }
        model.next = 11
        expectSame(pairs, model, values: 3)
        pairs.remove(3)
        model.pairs[3] = nil
        #expect(pairs.add(email: 2, phone: 2, at: 11) == 11)
        model.pairs[11] = ValuePairs.Pair(email: 2, phone: 2, at: 11)
        model.next = 12
        expectSame(pairs, model, values: 3)
    }

    private func roundTrip(_ pairs: ValuePairs) throws -> ValuePairs {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("pairs-\(UUID().uuidString)").path
        defer { unlink(path) }
        let output = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        var writer = ImageWriter(descriptor: output)
        try pairs.writeImage(to: &writer)
        close(output)
        let input = open(path, O_RDONLY)
        defer { close(input) }
        var reader = ImageReader(descriptor: input, size: writer.offset)
        let read = try ValuePairs(image: &reader)
        #expect(reader.checksum.value == writer.checksum.value)
        return read
    }
}
