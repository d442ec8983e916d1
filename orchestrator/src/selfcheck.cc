#include "cli.h"

namespace orchard::cli {
void add_selfcheck(CLI::App& app, int* exit_code) {}
}  // namespace orchard::cli
