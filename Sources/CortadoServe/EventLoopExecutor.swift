import Hummingbird
import HummingbirdCore
import Logging
import NIOCore

/// Runs a connection's whole task — reading the request, the handler, writing the response —
/// on the connection's own event loop (a Swift task executor preference), instead of
/// Hummingbird's default: the event loop reads, a Swift concurrency pool thread handles, and
/// every read and every response write hops between the two threads. On a 2-core machine each
/// hop is a wake-up of another thread; the one-row request paid about four of them.
/// Handlers must not block here (the inference itself runs on `BatchQueue`'s threads, or on the
/// event loop only when it is short: see `BatchQueue.tryInline`).
final class EventLoopTaskExecutor: TaskExecutor {
    let eventLoop: any EventLoop

    init(eventLoop: any EventLoop) { self.eventLoop = eventLoop }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        eventLoop.execute { job.runSynchronously(on: executor) }
    }
}

/// Hummingbird's HTTP/1 channel (NIO's HTTP/1 codec, unchanged) with each connection's task
/// pinned to its event loop by `EventLoopTaskExecutor`.
struct EventLoopHTTP1Channel: ServerChildChannel {
    typealias Value = HTTP1Channel.Value
    let inner: HTTP1Channel

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        inner.setup(channel: channel, logger: logger)
    }

    func handle(value: Value, logger: Logger) async {
        await withTaskExecutorPreference(EventLoopTaskExecutor(eventLoop: value.channel.eventLoop)) {
            await inner.handle(value: value, logger: logger)
        }
    }
}

extension HTTPServerBuilder {
    /// HTTP/1 with each connection's task on its event loop.
    static func http1OnEventLoop() -> HTTPServerBuilder {
        .init { responder in EventLoopHTTP1Channel(inner: HTTP1Channel(responder: responder)) }
    }
}
