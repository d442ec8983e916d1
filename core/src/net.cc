#include "orchard/core/net.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <regex>

#include "orchard/core/error.h"

namespace orchard::core {

uint16_t free_loopback_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw Error(std::string("free_loopback_port: socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    int err = errno;
    ::close(fd);
    throw Error(std::string("free_loopback_port: bind: ") + std::strerror(err));
  }
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

bool loopback_port_in_use(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw Error(std::string("loopback_port_in_use: socket: ") + std::strerror(errno));
  const int one = 1;  // as ZeroMQ binds: a port in TIME_WAIT is usable, a listening one is not
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  const bool in_use = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 && errno == EADDRINUSE;
  ::close(fd);
  return in_use;
}

bool parse_tcp_endpoint(const std::string& endpoint, std::string* host, uint16_t* port) {
  static const std::regex kTcp("tcp://([^:/]+):([0-9]{1,5})");
  std::smatch m;
  if (!std::regex_match(endpoint, m, kTcp)) return false;
  const int p = std::stoi(m[2]);
  if (p < 1 || p > 65535) return false;
  *host = m[1];
  *port = static_cast<uint16_t>(p);
  return true;
}

bool is_ipv4_literal(const std::string& host) {
  in_addr a{};
  return ::inet_pton(AF_INET, host.c_str(), &a) == 1;
}

std::string tcp_bind_problem(const std::string& host, uint16_t port) {
  const std::string h = host == "*" ? "0.0.0.0" : host;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  if (int rc = ::getaddrinfo(h.c_str(), std::to_string(port).c_str(), &hints, &res); rc != 0 || !res)
    return "cannot resolve '" + host + "'" + (rc != 0 ? std::string(": ") + ::gai_strerror(rc) : std::string());
  std::string problem = "no usable address for '" + host + "'";
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    const int rc = ::bind(fd, ai->ai_addr, ai->ai_addrlen);
    const int err = errno;
    ::close(fd);
    if (rc == 0) {
      problem.clear();
      break;
    }
    if (err == EADDRINUSE) problem = "port " + std::to_string(port) + " is already in use";
    else if (err == EADDRNOTAVAIL) problem = host + " is not an address of this machine";
    else problem = "cannot bind " + host + ":" + std::to_string(port) + ": " + std::strerror(err);
  }
  ::freeaddrinfo(res);
  return problem;
}

bool tcp_port_open(const std::string& host, uint16_t port, int timeout_ms) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0 || !res) return false;
  bool open = false;
  for (addrinfo* ai = res; ai && !open; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    int rc = ::connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (rc == 0) {
      open = true;
    } else if (errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      if (::poll(&p, 1, timeout_ms) == 1) {
        int err = 0;
        socklen_t len = sizeof(err);
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        open = (err == 0);
      }
    }
    ::close(fd);
  }
  ::freeaddrinfo(res);
  return open;
}

}  // namespace orchard::core
