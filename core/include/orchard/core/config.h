// Validated YAML configuration (run specs and their sections).
//
// A ConfigNode is a view of one YAML node plus its key path and source file. Every getter checks
// the node's type and range and throws orchard::ConfigError with one line that names the file,
// line, column, the full key path and what is allowed, e.g.
//   run.yaml:12:5: replay.tables[0].max_size: expected an integer in [1, 1e9], got 'lots'
// Sections call check_keys() with the keys they understand, so a typo is an error that suggests
// the closest allowed key instead of a silently ignored option.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace YAML {
class Node;
}

namespace orchard::core {

class ConfigNode {
 public:
  // Reads and parses a YAML file. Throws ConfigError (unreadable file, syntax error with line).
  static ConfigNode load_file(const std::string& path);
  // Parses YAML text; `source` names it in error messages.
  static ConfigNode load_string(const std::string& text, const std::string& source = "<string>");

  ConfigNode(const ConfigNode&);
  ConfigNode& operator=(const ConfigNode&);
  ~ConfigNode();

  // Key path of this node from the document root ("" for the root, "replay.tables[0]").
  const std::string& path() const { return path_; }
  const std::string& source() const { return source_; }
  // "file:line:col: path" prefix used in every error about this node.
  std::string where() const;

  bool defined() const;  // the key exists (and is not null)
  bool is_map() const;
  bool is_list() const;
  bool is_scalar() const;
  bool has(const std::string& key) const;
  // Keys of a map in document order; empty for anything else.
  std::vector<std::string> keys() const;

  // Throws naming the first key not in `allowed`, with the allowed set and a suggestion.
  void check_keys(const std::vector<std::string_view>& allowed) const;
  // Throws when this node is not a map (use for sections that must be maps).
  void expect_map() const;

  // Child access. A missing child is an undefined node whose getters report the full path.
  ConfigNode operator[](const std::string& key) const;
  // Elements of a list; throws when the node is defined but not a list. Undefined → empty.
  std::vector<ConfigNode> elements() const;

  // Scalars. The one-argument forms require the key; the others return the default when absent.
  std::string get_string(const std::string& key) const;
  std::string get_string(const std::string& key, const std::string& default_value) const;
  int64_t get_int(const std::string& key) const;
  int64_t get_int(const std::string& key, int64_t default_value,
                  int64_t min = INT64_MIN, int64_t max = INT64_MAX) const;
  double get_double(const std::string& key) const;
  double get_double(const std::string& key, double default_value,
                    double min = -1e308, double max = 1e308) const;
  bool get_bool(const std::string& key) const;
  bool get_bool(const std::string& key, bool default_value) const;
  // One of `allowed`; the error lists them.
  std::string get_choice(const std::string& key, const std::string& default_value,
                         const std::vector<std::string>& allowed) const;
  std::vector<int64_t> get_int_list(const std::string& key, std::vector<int64_t> default_value = {}) const;
  std::vector<double> get_double_list(const std::string& key, std::vector<double> default_value = {}) const;
  std::vector<std::string> get_string_list(const std::string& key,
                                           std::vector<std::string> default_value = {}) const;

  // This node's own scalar value (for list elements).
  std::string as_string() const;
  int64_t as_int() const;
  double as_double() const;
  bool as_bool() const;

  // Applies a command-line override "a.b[1].c=value" (value parsed as YAML, so "3", "true",
  // "[1, 2]" and "{x: 1}" keep their types). Creates missing map keys; list indices must exist.
  void apply_override(const std::string& assignment);

  // Serialises the (possibly overridden) document back to YAML.
  std::string dump() const;

 private:
  struct Doc;
  ConfigNode(std::shared_ptr<Doc> doc, std::unique_ptr<YAML::Node> node, std::string path);
  [[noreturn]] void fail(const std::string& what) const;
  std::string child_path(const std::string& key) const;

  std::shared_ptr<Doc> doc_;
  std::unique_ptr<YAML::Node> node_;
  std::string path_;
  std::string source_;
};

// Levenshtein distance; used for "did you mean" suggestions.
size_t edit_distance(std::string_view a, std::string_view b);

// The closest candidate within a small edit distance, if any.
std::optional<std::string> closest_match(std::string_view word, const std::vector<std::string_view>& candidates);

}  // namespace orchard::core
