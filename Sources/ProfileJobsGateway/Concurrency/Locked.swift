import Glibc

/// A value that several threads share, reached only with its lock held.
///
/// The standard library's `Mutex` waits on futexes inside the runtime, where ThreadSanitizer cannot see them, so
/// every access it guards reads as a data race in the sanitizer runs. A pthread mutex costs the same uncontended
/// and is one ThreadSanitizer understands, so those runs report only real races.
package final class Locked<Value>: @unchecked Sendable {  // Safe: `value` is only touched while `mutex` is held.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    package init(_ value: Value) {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        self.value = value
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deinitialize(count: 1)
        mutex.deallocate()
    }

    /// Runs `body` with the value while no other thread can reach it; `body` must not call back into this lock.
    package func withLock<Result, Failure: Error>(
        _ body: (inout Value) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
