// `orchard doctor`: checks the installation and reports what every process will run with.
#pragma once

#include <string>
#include <vector>

namespace orchard::orchestrator {

struct DoctorCheck {
  std::string name;    // "BLAS", "ZeroMQ", ...
  std::string value;   // what was found
  std::string status;  // ok | warn | fail
  std::string hint;    // what to do about warn/fail
};

struct DoctorReport {
  std::vector<DoctorCheck> checks;
  bool healthy() const;  // no check failed
};

// Runs every check. `bin_dir` is where orchard-torch-info lives (normally beside `orchard`).
// Never throws: a check that cannot run reports status "fail" with the reason.
DoctorReport run_doctor(const std::string& bin_dir);

std::string format_text(const DoctorReport& report);
std::string format_json(const DoctorReport& report);

}  // namespace orchard::orchestrator
