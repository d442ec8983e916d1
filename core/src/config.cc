#include "orchard/core/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "orchard/core/error.h"

namespace orchard::core {

struct ConfigNode::Doc {
  YAML::Node root;
  std::string source;
  // Values set by apply_override: (key path, the assignment as given), in order. A node at or
  // under such a path came from the command line, not from `source`.
  std::vector<std::pair<std::string, std::string>> overrides;
};

namespace {

std::string join(const std::vector<std::string_view>& items) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += ", ";
    out += items[i];
  }
  return out;
}

std::string join(const std::vector<std::string>& items) {
  std::vector<std::string_view> views(items.begin(), items.end());
  return join(views);
}

// yaml-cpp keeps both entries of a key given twice in one map and answers lookups with the
// first; a second `lr:` further down would be ignored without a word. Refuse it instead, naming
// both places. `budget` bounds the walk (aliases can make a small file a huge tree).
void check_no_duplicate_keys(const YAML::Node& n, const std::string& source, const std::string& path,
                             size_t& budget) {
  if (budget == 0) throw ConfigError(source + ": the document is too large (over 1000000 nodes with aliases expanded)");
  --budget;
  if (n.IsSequence()) {
    for (size_t i = 0; i < n.size(); ++i)
      check_no_duplicate_keys(n[i], source, path + "[" + std::to_string(i) + "]", budget);
  } else if (n.IsMap()) {
    std::map<std::string, YAML::Mark> seen;
    for (const auto& kv : n) {
      const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : std::string();
      const std::string child = path.empty() ? key : path + "." + key;
      if (kv.first.IsScalar()) {
        auto [it, fresh] = seen.emplace(key, kv.first.Mark());
        if (!fresh) {
          const YAML::Mark m = kv.first.Mark();
          throw ConfigError(source + ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1) + ": key '" +
                            child + "' is given twice (first at line " + std::to_string(it->second.line + 1) + ")");
        }
      }
      check_no_duplicate_keys(kv.second, source, child, budget);
    }
  }
}

std::string scalar_text(const YAML::Node& n) {
  if (n.IsScalar()) return n.Scalar();
  if (n.IsSequence()) return "a list";
  if (n.IsMap()) return "a map";
  return "null";
}

std::string format_number(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

// Strict integer parse: optional sign, digits, optional underscores are not YAML; we also
// accept exponent forms like 1e6 when they are whole numbers.
bool parse_int(const std::string& s, int64_t* out) {
  if (s.empty()) return false;
  size_t pos = 0;
  try {
    long long v = std::stoll(s, &pos, 0);
    if (pos == s.size()) {
      *out = v;
      return true;
    }
  } catch (...) {
  }
  try {
    double d = std::stod(s, &pos);
    if (pos == s.size() && std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.2e18) {
      *out = static_cast<int64_t>(d);
      return true;
    }
  } catch (...) {
  }
  return false;
}

bool parse_double(const std::string& s, double* out) {
  if (s == ".inf" || s == "+.inf" || s == ".Inf") {
    *out = HUGE_VAL;
    return true;
  }
  if (s == "-.inf" || s == "-.Inf") {
    *out = -HUGE_VAL;
    return true;
  }
  try {
    size_t pos = 0;
    double d = std::stod(s, &pos);
    if (pos == s.size()) {
      *out = d;
      return true;
    }
  } catch (...) {
  }
  return false;
}

bool parse_bool(const std::string& s, bool* out) {
  std::string l = s;
  std::transform(l.begin(), l.end(), l.begin(), ::tolower);
  if (l == "true" || l == "yes" || l == "on") {
    *out = true;
    return true;
  }
  if (l == "false" || l == "no" || l == "off") {
    *out = false;
    return true;
  }
  return false;
}

}  // namespace

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::optional<std::string> closest_match(std::string_view word,
                                         const std::vector<std::string_view>& candidates) {
  size_t best = SIZE_MAX;
  std::string_view best_word;
  for (auto c : candidates) {
    size_t d = edit_distance(word, c);
    if (d < best) {
      best = d;
      best_word = c;
    }
  }
  size_t limit = std::max<size_t>(2, word.size() / 3);
  if (best <= limit) return std::string(best_word);
  return std::nullopt;
}

ConfigNode::ConfigNode(std::shared_ptr<Doc> doc, std::unique_ptr<YAML::Node> node, std::string path)
    : doc_(std::move(doc)), node_(std::move(node)), path_(std::move(path)) {
  source_ = doc_->source;
}

ConfigNode::ConfigNode(const ConfigNode& o)
    : doc_(o.doc_), node_(std::make_unique<YAML::Node>(*o.node_)), path_(o.path_), source_(o.source_) {}

ConfigNode& ConfigNode::operator=(const ConfigNode& o) {
  if (this != &o) {
    doc_ = o.doc_;
    node_ = std::make_unique<YAML::Node>(*o.node_);
    path_ = o.path_;
    source_ = o.source_;
  }
  return *this;
}

ConfigNode::~ConfigNode() = default;

ConfigNode ConfigNode::load_string(const std::string& text, const std::string& source) {
  auto doc = std::make_shared<Doc>();
  doc->source = source;
  try {
    doc->root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw ConfigError(source + ":" + std::to_string(e.mark.line + 1) + ":" +
                      std::to_string(e.mark.column + 1) + ": YAML syntax error: " + e.msg);
  }
  if (!doc->root.IsDefined() || doc->root.IsNull()) doc->root = YAML::Node(YAML::NodeType::Map);
  size_t budget = 1000000;
  check_no_duplicate_keys(doc->root, source, "", budget);
  return ConfigNode(doc, std::make_unique<YAML::Node>(doc->root), "");
}

ConfigNode ConfigNode::load_file(const std::string& path) {
  std::error_code ec;
  const auto st = std::filesystem::status(path, ec);
  if (std::filesystem::is_directory(st)) throw ConfigError(path + ": is a directory, not a config file");
  if (std::filesystem::exists(st) && !std::filesystem::is_regular_file(st))
    throw ConfigError(path + ": not a regular file (a config file is YAML text)");
  if (std::filesystem::is_regular_file(st)) {
    const auto size = std::filesystem::file_size(path, ec);
    if (!ec && size > (16u << 20))
      throw ConfigError(path + ": " + std::to_string(size) + " bytes is too large for a config file (16 MiB, 16777216 bytes, at most)");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path + ": cannot open config file");
  std::ostringstream ss;
  ss << in.rdbuf();
  return load_string(ss.str(), path);
}

std::string ConfigNode::where() const {
  // The latest override that set this node or one of its parents names it instead of the file.
  for (auto it = doc_->overrides.rbegin(); it != doc_->overrides.rend(); ++it) {
    const std::string& p = it->first;
    if (path_ == p || (path_.size() > p.size() && path_.compare(0, p.size(), p) == 0 &&
                       (path_[p.size()] == '.' || path_[p.size()] == '[')))
      return "--set " + it->second + ": " + path_;
  }
  std::string out = source_;
  // yaml-cpp marks are 0-based; an undefined node has no mark, so report the path only.
  if (node_->IsDefined()) {
    const YAML::Mark m = node_->Mark();
    if (m.line >= 0) out += ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1);
  }
  out += ": ";
  out += path_.empty() ? "(top level)" : path_;
  return out;
}

void ConfigNode::fail(const std::string& what) const { throw ConfigError(where() + ": " + what); }

std::string ConfigNode::child_path(const std::string& key) const {
  return path_.empty() ? key : path_ + "." + key;
}

bool ConfigNode::defined() const { return node_->IsDefined() && !node_->IsNull(); }
// A missing key of a const map is an invalid yaml-cpp node: IsDefined() is false and every type
// query throws, so test IsDefined() first.
bool ConfigNode::is_map() const { return node_->IsDefined() && node_->IsMap(); }
bool ConfigNode::is_list() const { return node_->IsDefined() && node_->IsSequence(); }
bool ConfigNode::is_scalar() const { return node_->IsDefined() && node_->IsScalar(); }

bool ConfigNode::has(const std::string& key) const {
  if (!is_map()) return false;
  const YAML::Node& n = *node_;
  YAML::Node c = n[key];
  return c.IsDefined() && !c.IsNull();
}

std::vector<std::string> ConfigNode::keys() const {
  std::vector<std::string> out;
  if (!node_->IsMap()) return out;
  for (const auto& kv : *node_) out.push_back(kv.first.as<std::string>());
  return out;
}

void ConfigNode::expect_map() const {
  if (defined() && !node_->IsMap()) fail("expected a map of keys, got " + scalar_text(*node_));
}

void ConfigNode::check_keys(const std::vector<std::string_view>& allowed) const {
  if (!defined()) return;
  expect_map();
  for (const auto& kv : *node_) {
    std::string key = kv.first.as<std::string>();
    if (std::find(allowed.begin(), allowed.end(), key) != allowed.end()) continue;
    std::string msg = "unknown key '" + child_path(key) + "' (allowed: " + join(allowed) + ")";
    if (auto s = closest_match(key, allowed)) msg += "; did you mean '" + *s + "'?";
    std::string loc = source_;
    const YAML::Mark m = kv.first.Mark();
    if (m.line >= 0) loc += ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1);
    throw ConfigError(loc + ": " + msg);
  }
}

ConfigNode ConfigNode::operator[](const std::string& key) const {
  if (defined() && !node_->IsMap()) fail("expected a map with key '" + key + "', got " + scalar_text(*node_));
  const YAML::Node& n = *node_;
  YAML::Node child = defined() ? n[key] : YAML::Node();
  ConfigNode out(doc_, std::make_unique<YAML::Node>(child), child_path(key));
  return out;
}

std::vector<ConfigNode> ConfigNode::elements() const {
  std::vector<ConfigNode> out;
  if (!defined()) return out;
  if (!node_->IsSequence()) fail("expected a list, got " + scalar_text(*node_));
  for (size_t i = 0; i < node_->size(); ++i) {
    const YAML::Node& n = *node_;
    out.emplace_back(ConfigNode(doc_, std::make_unique<YAML::Node>(n[i]),
                                path_ + "[" + std::to_string(i) + "]"));
  }
  return out;
}

std::string ConfigNode::as_string() const {
  if (!defined()) fail("is required");
  if (!node_->IsScalar()) fail("expected a string, got " + scalar_text(*node_));
  return node_->Scalar();
}

int64_t ConfigNode::as_int() const {
  if (!defined()) fail("is required");
  int64_t v;
  if (!node_->IsScalar() || !parse_int(node_->Scalar(), &v))
    fail("expected an integer, got '" + scalar_text(*node_) + "'");
  return v;
}

double ConfigNode::as_double() const {
  if (!defined()) fail("is required");
  double v;
  if (!node_->IsScalar() || !parse_double(node_->Scalar(), &v))
    fail("expected a number, got '" + scalar_text(*node_) + "'");
  return v;
}

bool ConfigNode::as_bool() const {
  if (!defined()) fail("is required");
  bool v;
  if (!node_->IsScalar() || !parse_bool(node_->Scalar(), &v))
    fail("expected true or false, got '" + scalar_text(*node_) + "'");
  return v;
}

std::string ConfigNode::get_string(const std::string& key) const { return (*this)[key].as_string(); }

std::string ConfigNode::get_string(const std::string& key, const std::string& default_value) const {
  ConfigNode c = (*this)[key];
  return c.defined() ? c.as_string() : default_value;
}

int64_t ConfigNode::get_int(const std::string& key) const { return (*this)[key].as_int(); }

int64_t ConfigNode::get_int(const std::string& key, int64_t default_value, int64_t min, int64_t max) const {
  ConfigNode c = (*this)[key];
  if (!c.defined()) return default_value;
  int64_t v = c.as_int();
  if (v < min || v > max) {
    c.fail("expected an integer in [" + std::to_string(min) + ", " + std::to_string(max) + "], got " +
           std::to_string(v));
  }
  return v;
}

double ConfigNode::get_double(const std::string& key) const { return (*this)[key].as_double(); }

double ConfigNode::get_double(const std::string& key, double default_value, double min, double max) const {
  ConfigNode c = (*this)[key];
  if (!c.defined()) return default_value;
  double v = c.as_double();
  if (!(v >= min && v <= max)) {
    c.fail("expected a number in [" + format_number(min) + ", " + format_number(max) + "], got " +
           format_number(v));
  }
  return v;
}

bool ConfigNode::get_bool(const std::string& key) const { return (*this)[key].as_bool(); }

bool ConfigNode::get_bool(const std::string& key, bool default_value) const {
  ConfigNode c = (*this)[key];
  return c.defined() ? c.as_bool() : default_value;
}

std::string ConfigNode::get_choice(const std::string& key, const std::string& default_value,
                                   const std::vector<std::string>& allowed) const {
  ConfigNode c = (*this)[key];
  if (!c.defined()) return default_value;
  std::string v = c.as_string();
  if (std::find(allowed.begin(), allowed.end(), v) == allowed.end()) {
    std::string msg = "expected one of " + join(allowed) + ", got '" + v + "'";
    std::vector<std::string_view> views(allowed.begin(), allowed.end());
    if (auto s = closest_match(v, views)) msg += "; did you mean '" + *s + "'?";
    c.fail(msg);
  }
  return v;
}

std::vector<int64_t> ConfigNode::get_int_list(const std::string& key, std::vector<int64_t> default_value) const {
  ConfigNode c = (*this)[key];
  if (!c.defined()) return default_value;
  std::vector<int64_t> out;
  for (const auto& e : c.elements()) out.push_back(e.as_int());
  return out;
}

std::vector<double> ConfigNode::get_double_list(const std::string& key, std::vector<double> default_value) const {
  ConfigNode c = (*this)[key];
  if (!c.defined()) return default_value;
  std::vector<double> out;
  for (const auto& e : c.elements()) out.push_back(e.as_double());
  return out;
}

std::vector<std::string> ConfigNode::get_string_list(const std::string& key,
                                                     std::vector<std::string> default_value) const {
  ConfigNode c = (*this)[key];
  if (!c.defined()) return default_value;
  std::vector<std::string> out;
  for (const auto& e : c.elements()) out.push_back(e.as_string());
  return out;
}

void ConfigNode::apply_override(const std::string& assignment) {
  auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw ConfigError("--set '" + assignment + "': expected key.path=value");
  }
  std::string key = assignment.substr(0, eq);
  std::string text = assignment.substr(eq + 1);
  if (text.find_first_not_of(" \t") == std::string::npos)
    throw ConfigError("--set " + key + "=: empty value (to clear a key write " + key + "=null)");
  YAML::Node value;
  try {
    value = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw ConfigError("--set " + key + ": value is not valid YAML: " + e.msg);
  }
  // Split "a.b[2].c" into steps: map keys and list indices.
  struct Step {
    std::string key;
    long index = -1;
  };
  std::vector<Step> steps;
  size_t i = 0;
  while (i < key.size()) {
    if (key[i] == '.') {
      if (i == 0 || i + 1 == key.size() || key[i + 1] == '.' || key[i + 1] == '[')
        throw ConfigError("--set " + key + ": empty key between dots");
      ++i;
      continue;
    }
    if (key[i] == '[') {
      size_t close = key.find(']', i);
      if (close == std::string::npos) throw ConfigError("--set " + key + ": unclosed '['");
      int64_t idx;
      if (!parse_int(key.substr(i + 1, close - i - 1), &idx) || idx < 0)
        throw ConfigError("--set " + key + ": bad list index");
      steps.push_back({"", static_cast<long>(idx)});
      i = close + 1;
      continue;
    }
    size_t end = key.find_first_of(".[", i);
    if (end == std::string::npos) end = key.size();
    steps.push_back({key.substr(i, end - i), -1});
    i = end;
  }
  if (steps.empty()) throw ConfigError("--set '" + assignment + "': empty key");
  // Walk with non-const nodes so missing map keys are created.
  YAML::Node cur = *node_;
  std::string walked = path_;
  for (size_t s = 0; s < steps.size(); ++s) {
    const Step& st = steps[s];
    bool last = s + 1 == steps.size();
    if (st.index >= 0) {
      if (!cur.IsSequence() || static_cast<size_t>(st.index) >= cur.size())
        throw ConfigError("--set " + key + ": '" + walked + "' has no element [" + std::to_string(st.index) + "]");
      walked += "[" + std::to_string(st.index) + "]";
      if (last) {
        cur[st.index] = value;
        doc_->overrides.emplace_back(walked, assignment);
      } else {
        cur.reset(cur[st.index]);
      }
    } else {
      if (cur.IsDefined() && !cur.IsNull() && !cur.IsMap())
        throw ConfigError("--set " + key + ": '" + walked + "' is not a map");
      walked = walked.empty() ? st.key : walked + "." + st.key;
      if (last) {
        cur[st.key] = value;
        doc_->overrides.emplace_back(walked, assignment);
      } else {
        YAML::Node next = cur[st.key];
        if (!next.IsDefined() || next.IsNull()) {
          cur[st.key] = YAML::Node(YAML::NodeType::Map);
          next.reset(cur[st.key]);
        }
        cur.reset(next);
      }
    }
  }
}

std::string ConfigNode::dump() const {
  YAML::Emitter out;
  out << *node_;
  return out.c_str();
}

}  // namespace orchard::core
