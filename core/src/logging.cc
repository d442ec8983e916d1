#include "orchard/core/logging.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include <cstdio>
#include <memory>
#include <vector>

#include "orchard/core/config.h"
#include "orchard/core/error.h"

namespace orchard::core {
namespace {

const std::vector<std::string> kLevels = {"trace", "debug", "info", "warn", "error", "critical", "off"};

// %* in a pattern: the message, JSON-escaped.
class JsonMessageFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    std::string escaped = json_escape(std::string(msg.payload.data(), msg.payload.size()));
    dest.append(escaped.data(), escaped.data() + escaped.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JsonMessageFlag>();
  }
};

}  // namespace

std::string json_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size() + 8);
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

spdlog::level::level_enum parse_log_level(const std::string& level) {
  for (size_t i = 0; i < kLevels.size(); ++i) {
    if (kLevels[i] == level) return static_cast<spdlog::level::level_enum>(i);
  }
  std::string allowed;
  for (const auto& l : kLevels) allowed += (allowed.empty() ? "" : ", ") + l;
  throw ConfigError("log level '" + level + "' is not one of " + allowed);
}

LogOptions parse_log_options(const ConfigNode& node, LogOptions defaults) {
  node.check_keys({"level", "json", "file"});
  LogOptions o = defaults;
  o.level = node.get_choice("level", o.level, kLevels);
  o.json = node.get_bool("json", o.json);
  o.file = node.get_string("file", o.file);
  return o;
}

void log_fatal(const std::string& message) {
  auto logger = spdlog::default_logger();
  if (logger && logger->should_log(spdlog::level::critical) && !logger->sinks().empty()) {
    logger->critical("{}", message);
    logger->flush();
  } else {
    std::fprintf(stderr, "%s\n", message.c_str());
  }
}

void init_logging(const LogOptions& options) {
  auto level = parse_log_level(options.level);
  std::vector<spdlog::sink_ptr> sinks;
  if (options.to_stderr) sinks.push_back(std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
  if (!options.file.empty()) {
    try {
      sinks.push_back(std::make_shared<spdlog::sinks::basic_file_sink_mt>(options.file));
    } catch (const spdlog::spdlog_ex& e) {
      throw ConfigError("log file '" + options.file + "': " + e.what());
    }
  }
  auto logger = std::make_shared<spdlog::logger>(options.process, sinks.begin(), sinks.end());
  std::unique_ptr<spdlog::pattern_formatter> formatter;
  if (options.json) {
    formatter = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
    formatter->add_flag<JsonMessageFlag>('*').set_pattern(
        "{\"ts\":\"%Y-%m-%dT%H:%M:%S.%eZ\",\"level\":\"%l\",\"proc\":\"%n\",\"pid\":%P,\"msg\":\"%*\"}");
  } else {
    formatter = std::make_unique<spdlog::pattern_formatter>();
    formatter->set_pattern("%Y-%m-%d %H:%M:%S.%e %L %n [pid %P] %v");
  }
  logger->set_formatter(std::move(formatter));
  logger->set_level(level);
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(logger);
}

}  // namespace orchard::core
