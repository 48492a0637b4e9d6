import CKernels
import Foundation

/// A caching allocator for float buffers.
///
/// A training step allocates the same large activation buffers every step. Returning them to the
/// system and mapping them again costs page faults and zeroing; instead freed buffers are kept in
/// size-class free lists and handed out again. Size classes are powers of two split into 4 steps
/// (at most 25% waste), so a step's shapes map to a stable set of classes.
public final class CachingAllocator: @unchecked Sendable {
    public static let shared = CachingAllocator()

    /// Counters for tests and benchmarks.
    public struct Statistics: Sendable {
        /// Buffers obtained from the system.
        public var systemAllocations = 0
        /// Requests served from the cache.
        public var cacheHits = 0
        /// Bytes currently handed out.
        public var bytesInUse = 0
        /// Bytes held in free lists.
        public var bytesCached = 0
        /// Highest `bytesInUse` seen.
        public var peakBytesInUse = 0
    }

    private var freeLists: [Int: [UnsafeMutablePointer<Float>]] = [:]
    private var stats = Statistics()
    private let lock = NSLock()

    public var statistics: Statistics { lock.lock(); defer { lock.unlock() }; return stats }

    /// Rounds a request up to its size class (in floats).
    static func sizeClass(_ count: Int) -> Int {
        if count <= 64 { return 64 }
        let high = Int.bitWidth - (count - 1).leadingZeroBitCount  // 2^high >= count
        let step = 1 << (high - 3)  // quarter of the lower power of two: 2^(high-1) / 4
        return (count + step - 1) / step * step
    }

    /// Returns a 64-byte-aligned buffer of at least `count` floats (contents undefined) and its capacity.
    func allocate(_ count: Int) -> (UnsafeMutablePointer<Float>, Int) {
        let cls = CachingAllocator.sizeClass(max(count, 1))
        lock.lock()
        if var list = freeLists[cls], let p = list.popLast() {
            freeLists[cls] = list
            stats.cacheHits += 1
            stats.bytesCached -= cls * 4
            stats.bytesInUse += cls * 4
            stats.peakBytesInUse = max(stats.peakBytesInUse, stats.bytesInUse)
            lock.unlock()
            return (p, cls)
        }
        // No buffer of this class: reuse the smallest cached one up to twice the size rather than
        // map new memory. Pruned models request many sizes (each stage's token count), and exact
        // classes alone would keep a separate set of buffers per size.
        if let bigger = freeLists.keys.filter({ $0 > cls && $0 <= 2 * cls && !(freeLists[$0]?.isEmpty ?? true) }).min(),
           var list = freeLists[bigger], let p = list.popLast() {
            freeLists[bigger] = list
            stats.cacheHits += 1
            stats.bytesCached -= bigger * 4
            stats.bytesInUse += bigger * 4
            stats.peakBytesInUse = max(stats.peakBytesInUse, stats.bytesInUse)
            lock.unlock()
            return (p, bigger)
        }
        stats.systemAllocations += 1
        stats.bytesInUse += cls * 4
        stats.peakBytesInUse = max(stats.peakBytesInUse, stats.bytesInUse)
        lock.unlock()
        var raw: UnsafeMutableRawPointer?
        if posix_memalign(&raw, 64, cls * 4) != 0 {
            trim()  // cached buffers of other sizes may be what stands in the way
            if posix_memalign(&raw, 64, cls * 4) != 0 { raw = nil }
        }
        guard let raw else { AddressSpace.outOfMemory(bytes: cls * 4, for: "a tensor") }
        return (raw.bindMemory(to: Float.self, capacity: cls), cls)
    }

    func release(_ pointer: UnsafeMutablePointer<Float>, capacity: Int) {
        lock.lock()
        freeLists[capacity, default: []].append(pointer)
        stats.bytesInUse -= capacity * 4
        stats.bytesCached += capacity * 4
        lock.unlock()
    }

    /// Starts a new peak measurement from the current bytes in use.
    public func resetPeak() {
        lock.lock()
        stats.peakBytesInUse = stats.bytesInUse
        lock.unlock()
    }

    /// Returns all cached buffers to the system.
    public func trim() {
        lock.lock()
        let lists = freeLists
        freeLists = [:]
        stats.bytesCached = 0
        lock.unlock()
        for (_, list) in lists { for p in list { free(p) } }
    }

    /// `trim()`, then the C heap's free pages back to the system too, so that the resident memory
    /// is what is in use. For measurements that change shapes (a new batch size): cached buffers of
    /// the old shapes would otherwise stay resident beside the new ones.
    public func releaseToSystem() {
        trim()
        _ = elip_release_free_heap()
    }
}

/// Memory behind a tensor: either a buffer from the caching allocator (returned on deinit) or a
/// window into a parameter arena (kept alive by `owner`).
final class Storage {
    let pointer: UnsafeMutablePointer<Float>
    let capacity: Int
    private let fromAllocator: Bool
    private let owner: AnyObject?

    /// A fresh buffer of `count` floats; zero-filled when `zeroed`.
    init(count: Int, zeroed: Bool) {
        (pointer, capacity) = CachingAllocator.shared.allocate(count)
        fromAllocator = true
        owner = nil
        if zeroed { pointer.update(repeating: 0, count: count) }
    }

    /// A window of memory owned by `owner` (a parameter arena).
    init(borrowing pointer: UnsafeMutablePointer<Float>, count: Int, owner: AnyObject) {
        self.pointer = pointer
        self.capacity = count
        self.fromAllocator = false
        self.owner = owner
    }

    deinit {
        if fromAllocator { CachingAllocator.shared.release(pointer, capacity: capacity) }
    }
}
