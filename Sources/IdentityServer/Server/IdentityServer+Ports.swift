import NIOCore
import NIOPosix

extension IdentityServer {
    /// A listener that cannot bind its address, named as an operator knows it: `http port 8080 is in use`.
    public struct ListenerError: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    /// Binds each listener's address for a moment and lets it go, so that a port in use is reported
    /// before anything else starts (the store opened, the directory created, the services' own
    /// errors and shutdown noise logged). Port 0 always binds. The sockets are bound as the
    /// listeners bind theirs, address reuse included, so what passes here binds there.
    public static func checkPortsAreFree(_ configuration: ServerConfiguration) async throws(ListenerError) {
        for (listener, port) in [("http", configuration.httpPort), ("tcp", configuration.tcpPort)] where port != 0 {
            do {
                let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                    .bind(host: configuration.host, port: port)
                    .get()
                try? await channel.close()
            } catch let error as IOError where error.errnoCode == EADDRINUSE {
                throw ListenerError(description: "\(listener) port \(port) is in use")
            } catch let error as IOError {
                throw ListenerError(
                    description: "\(listener) port \(port) on \(configuration.host) cannot be bound: "
                        + String(cString: strerror(error.errnoCode))
                )
            } catch {
                throw ListenerError(description: "\(listener) port \(port) on \(configuration.host) cannot be bound: \(error)")
            }
        }
    }
}
