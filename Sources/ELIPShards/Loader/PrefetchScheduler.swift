import ELIPImage
import Foundation

/// Worker threads computing the samples of a window of upcoming batches, earliest batch first.
final class PrefetchScheduler: @unchecked Sendable {
    let core: LoaderCore
    let depth: Int
    private let cond = NSCondition()
    private var window: [BatchJob] = []
    private var stopping = false
    private var running = 0
    private var startupError: Error?
    private let consumerLock = NSLock()

    init(core: LoaderCore, threads: Int, depth: Int) {
        self.core = core
        self.depth = depth
        running = threads
        for t in 0..<threads {
            let thread = Thread { [self] in self.workerLoop() }
            thread.name = "elip-loader-\(t)"
            thread.stackSize = 4 << 20
            thread.start()
        }
    }

    func stop() {
        cond.lock()
        stopping = true
        for j in window { j.cancelled = true }
        window.removeAll()
        cond.broadcast()
        while running > 0 { cond.wait() }
        cond.unlock()
    }

    /// Makes `keys` the window (reusing jobs already there). Caller holds the lock.
    private func aim(_ keys: [BatchKey]) {
        var old: [BatchKey: BatchJob] = [:]
        for j in window { old[j.key] = j }
        var new: [BatchJob] = []
        for k in keys {
            if let j = old.removeValue(forKey: k) { new.append(j) } else {
                new.append(BatchJob(key: k, batchSize: core.batchSize, sampleFloats: 3 * core.imageSize * core.imageSize))
            }
        }
        for j in old.values { j.cancelled = true }
        window = new
        cond.broadcast()
    }

    private func keys(from start: BatchKey, count: Int) -> [BatchKey] {
        var out: [BatchKey] = []
        var k = start
        for _ in 0..<count {
            out.append(k)
            k = core.next(k)
        }
        return out
    }

    func get(_ key: BatchKey) throws -> LoadedBatch {
        consumerLock.lock()
        defer { consumerLock.unlock() }
        cond.lock()
        defer { cond.unlock() }
        if stopping { throw LoaderError.closed }
        let wasReady = window.first(where: { $0.key == key })?.result != nil
        aim(keys(from: key, count: 1 + depth))
        let job = window[0]
        while job.result == nil && !stopping { cond.wait() }
        guard let result = job.result else { throw LoaderError.closed }
        // Keep `depth` batches in flight behind the one returned.
        aim(keys(from: core.next(key), count: depth))
        core.countDelivered(hit: wasReady)
        return try result.get()
    }

    private func workerLoop() {
        let decoder = try? JPEGDecoder()
        cond.lock()
        defer {
            running -= 1
            cond.broadcast()
            cond.unlock()
        }
        while !stopping {
            guard let job = window.first(where: { $0.dispatched < $0.batchSize && $0.errors.isEmpty }) else {
                cond.wait()
                continue
            }
            let slot = job.dispatched
            job.dispatched += 1
            cond.unlock()
            var outcome: Result<SampleInfo, Error>
            if let decoder {
                outcome = Result {
                    try core.computeSample(job.key, slot: slot, decoder: decoder, out: job.buffer + slot * job.sampleFloats)
                }
            } else {
                outcome = .failure(LoaderError.invalidArgument("could not create a JPEG decoder"))
            }
            cond.lock()
            switch outcome {
            case let .success(info): job.store(slot: slot, info)
            case let .failure(e): job.errors.append((slot, e))
            }
            job.done += 1
            let complete = job.done == job.batchSize || (!job.errors.isEmpty && job.done == job.dispatched)
            guard complete, !job.cancelled else { continue }
            if let e = job.firstError {
                job.result = .failure(e)
                cond.broadcast()
                continue
            }
            cond.unlock()
            let assembled = Result { try core.assemble(job) }
            cond.lock()
            job.result = assembled
            cond.broadcast()
        }
    }
}
