import XCTest
@testable import ELIPDistributed

final class BucketPlanTests: XCTestCase {
    func testBucketsRunFromTheEndAndCoverEveryElementOnce() throws {
        for count in [0, 1, 2, 7, 16, 17, 1000, 1001, 12_345] {
            for size in [1, 2, 3, 7, 16, 1000, 1 << 20] {
                let plan = try BucketPlan(count: count, bucketElements: size)
                var seen = [Int](repeating: 0, count: count)
                for r in plan.buckets { for i in r { seen[i] += 1 } }
                XCTAssertTrue(seen.allSatisfy { $0 == 1 }, "count \(count) bucket \(size)")
                XCTAssertEqual(plan.buckets.count, (count + size - 1) / size)
                // Issue order: each bucket ends where the previous one started; first ends at count.
                var end = count
                for (k, r) in plan.buckets.enumerated() {
                    XCTAssertEqual(r.upperBound, end)
                    XCTAssertFalse(r.isEmpty)
                    if k < plan.buckets.count - 1 { XCTAssertEqual(r.count, size) } else { XCTAssertLessThanOrEqual(r.count, size) }
                    end = r.lowerBound
                }
                XCTAssertEqual(end, 0)
            }
        }
    }

    func testOddSizesPutTheRemainderAtTheFront() throws {
        let plan = try BucketPlan(count: 10, bucketElements: 4)
        XCTAssertEqual(plan.buckets, [6..<10, 2..<6, 0..<2])
        XCTAssertEqual(try BucketPlan(count: 3, bucketElements: 5).buckets, [0..<3])
        XCTAssertEqual(try BucketPlan(count: 0, bucketElements: 5).buckets, [])
    }

    /// An issue order permutes the buckets; their boundaries never change (so neither do the
    /// reduced values). The order learned from a backward sorts buckets by when their last
    /// element became final; never-final elements go last.
    func testIssueOrderPermutesFixedBoundaries() throws {
        let plan = try BucketPlan(count: 10, bucketElements: 4, order: [2, 0, 1])
        XCTAssertEqual(plan.buckets, [0..<2, 6..<10, 2..<6])
        XCTAssertThrowsError(try BucketPlan(count: 10, bucketElements: 4, order: [0, 1]))
        XCTAssertThrowsError(try BucketPlan(count: 10, bucketElements: 4, order: [0, 1, 1]))
        // Elements 0..<5 final at time 0, 5..<8 at time 1, 8..<10 never.
        let order = try BucketPlan.orderByCompletion(count: 10, bucketElements: 4) { r in
            if r.upperBound > 8 { return nil }
            return r.upperBound > 5 ? 1 : 0
        }
        XCTAssertEqual(order, [2, 1, 0])
    }

    func testInvalidPlansThrow() {
        assertThrowsDistributed(try BucketPlan(count: 10, bucketElements: 0)) { if case .invalidArgument = $0 { return true }; return false }
        assertThrowsDistributed(try BucketPlan(count: -1, bucketElements: 4)) { if case .invalidArgument = $0 { return true }; return false }
    }

    func testReducerBucketBytesBecomeElements() throws {
        let r = try GradientReducer(communicator: .singleProcess())
        XCTAssertEqual(r.bucketBytes, 25 * 1024 * 1024)
        XCTAssertEqual(r.bucketElements, 25 * 1024 * 1024 / 4)
        let odd = try GradientReducer(communicator: .singleProcess(), bucketBytes: 30)
        XCTAssertEqual(odd.bucketElements, 7)
        XCTAssertEqual(try odd.plan(count: 15).buckets, [8..<15, 1..<8, 0..<1])
        assertThrowsDistributed(try GradientReducer(communicator: .singleProcess(), bucketBytes: 3)) { _ in true }
    }
}

final class LauncherTests: XCTestCase {
    func testNoLauncherMeansSingleProcess() {
        XCTAssertEqual(LauncherEnvironment.detect([:]), .notLaunched)
        XCTAssertFalse(LauncherEnvironment.detect(["HOME": "/root", "PATH": "/bin"]).isLaunched)
    }

    func testOpenMPIWinsOverSlurmAllocation() throws {
        let env = ["OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "1", "PMIX_RANK": "1",
                   "SLURM_NTASKS": "8", "SLURM_PROCID": "0", "SLURM_STEP_ID": "0"]
        let l = LauncherEnvironment.detect(env)
        XCTAssertTrue(l.isLaunched)
        XCTAssertEqual(l.expectedSize, 2)
        XCTAssertEqual(l.sizeVariable, "OMPI_COMM_WORLD_SIZE")
        XCTAssertNoThrow(try l.validate(worldSize: 2))
        assertThrowsDistributed(try l.validate(worldSize: 1)) {
            $0 == .worldSizeMismatch(expected: 2, actual: 1, variable: "OMPI_COMM_WORLD_SIZE")
        }
        XCTAssertTrue(DistributedError.worldSizeMismatch(expected: 2, actual: 1, variable: "OMPI_COMM_WORLD_SIZE")
            .description.contains("OMPI_COMM_WORLD_SIZE=2"))
    }

    func testSlurmNeedsAStep() {
        // A batch script runs as SLURM_PROCID=0 of SLURM_NTASKS but is not an srun task.
        XCTAssertFalse(LauncherEnvironment.detect(["SLURM_NTASKS": "4", "SLURM_PROCID": "0"]).isLaunched)
        let srun = LauncherEnvironment.detect(["SLURM_NTASKS": "4", "SLURM_STEP_NUM_TASKS": "3",
                                               "SLURM_PROCID": "2", "SLURM_STEP_ID": "0"])
        XCTAssertTrue(srun.isLaunched)
        XCTAssertEqual(srun.expectedSize, 3)
        XCTAssertEqual(LauncherEnvironment.detect(["SLURM_NTASKS": "4", "SLURM_PROCID": "1", "SLURM_STEPID": "1"]).expectedSize, 4)
    }

    func testPMIAndPMIx() {
        let pmi = LauncherEnvironment.detect(["PMI_SIZE": "5", "PMI_RANK": "0"])
        XCTAssertEqual(pmi.expectedSize, 5)
        XCTAssertEqual(pmi.launcher, "PMI")
        let pmix = LauncherEnvironment.detect(["PMIX_RANK": "0"])
        XCTAssertTrue(pmix.isLaunched)
        XCTAssertNil(pmix.expectedSize)
        XCTAssertNoThrow(try pmix.validate(worldSize: 7))
    }

    func testFingerprintHashIsStable() {
        // FNV-1a 64 reference values.
        XCTAssertEqual(Fingerprint.hash(""), 0xcbf2_9ce4_8422_2325)
        XCTAssertEqual(Fingerprint.hash("a"), 0xaf63_dc4c_8601_ec8c)
        XCTAssertNotEqual(Fingerprint.hash("config-a"), Fingerprint.hash("config-b"))
    }
}
