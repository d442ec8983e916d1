// Small socket utilities shared by servers, the orchestrator and tests.
#pragma once

#include <cstdint>
#include <string>

namespace orchard::core {

// Returns a TCP port on 127.0.0.1 that was free when asked: the kernel picks it (bind to port 0),
// the socket is closed, and the port is returned. A caller that then binds it can still race
// another process; callers retry on EADDRINUSE.
uint16_t free_loopback_port();

// True when a socket already listens on 127.0.0.1:port (or on all addresses): binding it fails
// with EADDRINUSE. Unlike connecting to it (tcp_port_open), this does not touch the listener,
// which may be another program's.
bool loopback_port_in_use(uint16_t port);

// Splits "tcp://HOST:PORT" into host and port; false unless PORT is 1-65535 (ZeroMQ would take
// 99999 and bind 99999 - 65536) and HOST is non-empty without ':' or '/'.
bool parse_tcp_endpoint(const std::string& endpoint, std::string* host, uint16_t* port);

// True for a dotted IPv4 address ("10.0.0.2"): what ZeroMQ and redis-server bind (ZeroMQ takes
// a name as a network interface's, so a host name would not bind).
bool is_ipv4_literal(const std::string& host);

// Why a TCP socket could not listen on host:port here, or "" when it could: binds (with
// SO_REUSEADDR, as ZeroMQ does) and closes at once, touching no other socket. `host` is an IP
// address, a name, or "*" / "0.0.0.0" for all addresses. Answers name the cause: "port 5555 is
// already in use", "10.9.9.9 is not an address of this machine", "cannot resolve 'nosuch'".
std::string tcp_bind_problem(const std::string& host, uint16_t port);

// True when something accepts TCP connections on host:port within timeout_ms.
bool tcp_port_open(const std::string& host, uint16_t port, int timeout_ms);

}  // namespace orchard::core
