import ELIPConfig
import XCTest

final class ConfigSectionTests: XCTestCase {
    func section(_ yaml: String, ignoring: IgnoredKeys = .none) throws -> ConfigSection {
        try ConfigSection.parse(yaml, source: "test.yaml", ignoring: ignoring)
    }

    func expectError(_ body: () throws -> Void, _ needle: String, line: UInt = #line) {
        XCTAssertThrowsError(try body(), line: line) { e in
            XCTAssertTrue("\(e)".contains(needle), "'\(e)' lacks '\(needle)'", line: line)
        }
    }

    /// Numbers: YAML ints and floats, numeric strings (YAML 1.1 reads 1e-4 as a string),
    /// integral floats for integers; NaN, infinities, fractions and out-of-range values are errors
    /// with the dotted key, never traps.
    func testNumbersAreCheckedWhereTheyAreRead() throws {
        let s = try section("a: 3\nb: 1e-4\nc: 2.0\nd: .nan\ne: -.inf\nf: 2.5\ng: 1e30\nh: x\nt: {n: -1}")
        XCTAssertEqual(try s.int("a", in: 0...10), 3)
        XCTAssertEqual(try s.double("b", in: 0...1), 1e-4)
        XCTAssertEqual(try s.int("c", in: 0...10), 2)
        XCTAssertNil(try s.int("absent", in: 0...10))
        XCTAssertEqual(try s.int("absent2", default: 7, in: 0...10), 7)
        expectError({ _ = try s.double("d", in: 0...1) }, "test.yaml: d: must be a finite number, got .nan")
        expectError({ _ = try s.int("e", in: 0...1) }, "test.yaml: e: must be a finite number, got -.inf")
        expectError({ _ = try s.int("f", in: 0...10) }, "f: must be an integer in [0, 10], got 2.5")
        expectError({ _ = try s.int("g", in: 0...10) }, "g: must be in [0, 10], got 1e+30")
        expectError({ _ = try s.int("a", in: 5...10) }, "a: must be in [5, 10], got 3")
        expectError({ _ = try s.double("h", in: 0...1) }, "h: must be a number, got 'x'")
        let t = try XCTUnwrap(try s.section("t"))
        expectError({ _ = try t.int("n", in: 0...Int.max) }, "test.yaml: t.n: must be in [0, \(Int.max)], got -1")
        expectError({ _ = try s.ints("a", in: 0...1) }, "a: must be a list of integers")
    }

    func testListsBoolsStringsAndChoices() throws {
        let s = try section("l: [1, 2, 30]\nb: yes\nc: true\nm: adamw\nn: 5")
        expectError({ _ = try s.ints("l", in: 0...10) }, "l[2]: must be in [0, 10], got 30")
        XCTAssertEqual(try s.doubles("l", in: 0...100), [1, 2, 30])
        XCTAssertEqual(try s.bool("c", default: false), true)
        XCTAssertEqual(try s.choice("m", ["adamw", "sgd"]), "adamw")
        expectError({ _ = try s.choice("m", ["adamW", "sgd"]) }, "m: must be adamW or sgd, not 'adamw' (did you mean adamW?)")
        expectError({ _ = try s.string("n") }, "n: must be a string, got 5")
    }

    /// Unknown keys are found after reading, at any depth, with the nearest valid key of their
    /// own section; keys accepted and ignored on purpose are listed, not rejected.
    func testUnknownKeysNameTheNearestValidKey() throws {
        let s = try section("train_file: [a]\nimage_res: 1\ntrain: {max_step: 5, seed: 1}\nsched: {decay_rate: 1}",
                            ignoring: IgnoredKeys(["train_file": "why", "sched.decay_rate": "why"]))
        _ = try s.int("image_res", in: 0...9)
        let train = try XCTUnwrap(try s.section("train"))
        _ = try train.int("max_steps", in: 0...9)
        _ = try train.int("seed", in: 0...9)
        _ = try s.section("sched")
        expectError({ try s.finish() }, "test.yaml: train.max_step: unknown key, did you mean max_steps?")
        XCTAssertEqual(s.ignoredKeysPresent, ["sched.decay_rate", "train_file"])

        let far = try section("zzz: 1\nalpha: 2")
        _ = try far.double("alpha", in: 0...9)
        expectError({ try far.finish() }, "zzz: unknown key")
        XCTAssertThrowsError(try far.finish()) { XCTAssertFalse("\($0)".contains("did you mean"), "\($0)") }
    }

    /// A required key that is absent, next to an unknown key close to it, is reported as the typo.
    func testMissingKeyNextToATypo() throws {
        let s = try section("num_act_layer: [2]\nbegin_layer: [1]")
        XCTAssertEqual(s.missing("num_act_layers").description, "test.yaml: num_act_layer: unknown key, did you mean num_act_layers?")
        XCTAssertEqual(s.missing("keep_ratio").description, "test.yaml: keep_ratio: missing (required)")
    }

    func testPresenceAndSections() throws {
        let s = try section("a: null\nb: false\nc: {x: 1}\nd: [1]")
        XCTAssertEqual(s.presence("a"), .null)
        XCTAssertEqual(s.presence("b"), .off)
        XCTAssertEqual(s.presence("c"), .value)
        XCTAssertEqual(s.presence("e"), .absent)
        XCTAssertNil(try s.section("a"))
        expectError({ _ = try s.section("d") }, "d: must be a mapping of keys to values")
        expectError({ _ = try ConfigSection.parse("- 1\n- 2", source: "list.yaml") }, "list.yaml: the top level must be a mapping")
        expectError({ _ = try ConfigSection.parse("a: [1, 2", source: "broken.yaml") }, "broken.yaml: YAML syntax error")
        expectError({ _ = try ConfigSection.load("/nonexistent/x.yaml") }, "/nonexistent/x.yaml: cannot read the file")
    }

    func testEditDistance() {
        XCTAssertEqual(ConfigSection.editDistance("max_step", "max_steps"), 1)
        XCTAssertEqual(ConfigSection.editDistance("image_ers", "image_res"), 1, "a swap of neighbours counts once")
        XCTAssertEqual(ConfigSection.editDistance("", "abc"), 3)
        XCTAssertEqual(ConfigSection.nearest("num_act_layer", among: ["begin_layer", "num_act_layers", "keep_ratio"]), "num_act_layers")
        XCTAssertNil(ConfigSection.nearest("xyz", among: ["begin_layer", "keep_ratio"]))
    }
}
