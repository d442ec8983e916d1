// Build identity, baked in at configure time.
#pragma once

namespace orchard::core {

const char* orchard_version();     // "0.1.0"
const char* orchard_git_commit();  // short commit hash, or "unknown"
const char* orchard_build_type();  // CMAKE_BUILD_TYPE
const char* orchard_compiler();    // "GNU 12.2.0"
bool orchard_with_cuda();          // built against a CUDA LibTorch

// Protocol version carried in every envelope; see docs/protocol.md.
constexpr unsigned kProtocolVersion = 1;

}  // namespace orchard::core
