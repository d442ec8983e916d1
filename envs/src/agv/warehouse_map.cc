#include "agv/warehouse_map.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "orchard/core/error.h"

namespace orchard::envs::agv {
namespace {

// Procedural layouts. Every block of shelf rows keeps a free corridor of kEdgeMargin along its
// edges (outer walls and partition); rows are separated by aisles of at least kMinAisle and cut
// into sections by cross aisles, all of which open onto that corridor, so the free space is
// connected by construction (no search needed at reset).
constexpr double kEdgeMargin = 2.0;
constexpr double kMinAisle = 2.0;
constexpr double kMinRackDepth = 1.0;  // a double-sided rack row, metres across
constexpr double kMaxRackDepth = 1.6;
constexpr double kMinSectionLength = 2.0;
constexpr double kMinSectionTarget = 5.0;  // preferred section length is drawn from this range
constexpr double kMaxSectionTarget = 9.0;
constexpr double kMinCrossAisle = 2.0;
constexpr double kMaxCrossAisle = 3.0;
constexpr double kGapProbability = 0.1;  // a rack section left out
constexpr double kPartitionThickness = 0.3;
constexpr double kMinPartitionFraction = 0.4;  // partition x as a fraction of the width
constexpr double kMaxPartitionFraction = 0.6;
constexpr double kDoorWidth = 2.5;
constexpr double kDoorJamb = 0.5;  // minimum wall between a door and its slot's end

struct Rect {
  double x0, y0, x1, y1;
};

// Rows of racks filling `area`, parallel to x (`along_x`) or to y.
void add_shelf_rows(const Rect& area, bool along_x, Rng& rng, std::vector<Box>* boxes) {
  // u runs along the rows, w across them.
  const double u0 = (along_x ? area.x0 : area.y0) + kEdgeMargin;
  const double u1 = (along_x ? area.x1 : area.y1) - kEdgeMargin;
  const double w0 = (along_x ? area.y0 : area.x0) + kEdgeMargin;
  const double w1 = (along_x ? area.y1 : area.x1) - kEdgeMargin;
  const double span_u = u1 - u0, span_w = w1 - w0;
  const double depth = rng.uniform(kMinRackDepth, kMaxRackDepth);
  if (span_u < kMinSectionLength || span_w < depth) return;

  // rows * depth + (rows - 1) * kMinAisle <= span_w; the aisles share what is left.
  const int max_rows = static_cast<int>((span_w + kMinAisle) / (depth + kMinAisle));
  const int rows = max_rows > 1 ? max_rows - static_cast<int>(rng.below(2)) : 1;
  const double pitch = rows > 1 ? (span_w - depth) / (rows - 1) : 0.0;
  const double first_w = rows > 1 ? w0 : w0 + 0.5 * (span_w - depth);

  int sections = std::max(1, static_cast<int>(std::lround(span_u / rng.uniform(kMinSectionTarget, kMaxSectionTarget))));
  const double cross = rng.uniform(kMinCrossAisle, kMaxCrossAisle);
  double length = (span_u - (sections - 1) * cross) / sections;
  while (sections > 1 && length < kMinSectionLength) {
    --sections;
    length = (span_u - (sections - 1) * cross) / sections;
  }

  for (int r = 0; r < rows; ++r) {
    for (int s = 0; s < sections; ++s) {
      if (rng.bernoulli(kGapProbability)) continue;
      const double ua = u0 + s * (length + cross), wa = first_w + r * pitch;
      boxes->push_back(along_x ? Box{ua, wa, ua + length, wa + depth} : Box{wa, ua, wa + depth, ua + length});
    }
  }
}

// A wall across the floor at x = [x0, x1] with `doors` doorways, one in each equal slot of the
// height, each at a random place in its slot.
void add_partition(double x0, double x1, double height, int doors, Rng& rng, std::vector<Box>* boxes) {
  const double slot = height / doors;
  double wall_from = 0.0;
  for (int k = 0; k < doors; ++k) {
    const double lo = k * slot + 0.5 * kDoorWidth + kDoorJamb, hi = (k + 1) * slot - 0.5 * kDoorWidth - kDoorJamb;
    const double centre = rng.uniform(lo, hi);
    boxes->push_back(Box{x0, wall_from, x1, centre - 0.5 * kDoorWidth});
    wall_from = centre + 0.5 * kDoorWidth;
  }
  boxes->push_back(Box{x0, wall_from, x1, height});
}

// Slab test of the segment a + t d, t in [0, 1], against a closed box.
bool segment_touches(double ax, double ay, double dx, double dy, const Box& b) {
  double t0 = 0.0, t1 = 1.0;
  if (dx == 0.0) {
    if (ax < b.x0 || ax > b.x1) return false;
  } else {
    double ta = (b.x0 - ax) / dx, tb = (b.x1 - ax) / dx;
    if (ta > tb) std::swap(ta, tb);
    t0 = std::max(t0, ta);
    t1 = std::min(t1, tb);
    if (t0 > t1) return false;
  }
  if (dy == 0.0) return ay >= b.y0 && ay <= b.y1;
  double ta = (b.y0 - ay) / dy, tb = (b.y1 - ay) / dy;
  if (ta > tb) std::swap(ta, tb);
  return std::max(t0, ta) <= std::min(t1, tb);
}

std::string fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", v);
  return buf;
}


}  // namespace

double WarehouseMap::diagonal() const { return std::hypot(width, height); }

double WarehouseMap::clearance(double x, double y) const {
  const double border = std::min(std::min(x, width - x), std::min(y, height - y));
  if (border <= 0.0) return 0.0;
  double best2 = border * border;
  for (const Box& b : boxes) {
    const double dx = std::max(std::max(b.x0 - x, x - b.x1), 0.0);
    const double dy = std::max(std::max(b.y0 - y, y - b.y1), 0.0);
    best2 = std::min(best2, dx * dx + dy * dy);
  }
  return std::sqrt(best2);
}

bool WarehouseMap::segment_clear(double ax, double ay, double bx, double by, double margin) const {
  // The floor shrunk by the margin is convex: both ends inside means the whole segment is.
  auto inside = [&](double x, double y) {
    return x >= margin && x <= width - margin && y >= margin && y <= height - margin;
  };
  if (!inside(ax, ay) || !inside(bx, by)) return false;
  const double dx = bx - ax, dy = by - ay;
  for (const Box& b : boxes) {
    if (segment_touches(ax, ay, dx, dy, Box{b.x0 - margin, b.y0 - margin, b.x1 + margin, b.y1 + margin})) {
      return false;
    }
  }
  return true;
}

void generate_layout(Layout layout, Rng& rng, WarehouseMap* map) {
  map->boxes.clear();
  map->has_start = map->has_target = false;
  if (layout == Layout::kSimple) {
    map->width = WarehouseMap::kSimpleWidth;
    map->height = WarehouseMap::kSimpleHeight;
    add_shelf_rows({0.0, 0.0, map->width, map->height}, rng.bernoulli(0.5), rng, &map->boxes);
    return;
  }
  map->width = WarehouseMap::kComplexWidth;
  map->height = WarehouseMap::kComplexHeight;
  const double split = map->width * rng.uniform(kMinPartitionFraction, kMaxPartitionFraction);
  const double half = 0.5 * kPartitionThickness;
  add_partition(split - half, split + half, map->height, 2 + static_cast<int>(rng.below(2)), rng, &map->boxes);
  add_shelf_rows({0.0, 0.0, split - half, map->height}, rng.bernoulli(0.5), rng, &map->boxes);
  add_shelf_rows({split + half, 0.0, map->width, map->height}, rng.bernoulli(0.5), rng, &map->boxes);
}

WarehouseMap load_map_file(const std::string& env, const std::string& path) {
  const std::string file = env + ": map file '" + path + "'";
  std::ifstream in(path);
  if (!in) throw EnvError(file + ": cannot open (" + std::strerror(errno) + ")");

  WarehouseMap map;
  int line_no = 0, size_line = 0;
  auto fail = [&](const std::string& problem) -> void {
    throw EnvError(file + " line " + std::to_string(line_no) + ": " + problem);
  };
  std::string text;
  std::vector<std::string> tokens;
  while (std::getline(in, text)) {
    ++line_no;
    const size_t hash = text.find('#');
    if (hash != std::string::npos) text.resize(hash);
    std::istringstream words(text);
    tokens.clear();
    for (std::string w; words >> w;) tokens.push_back(w);
    if (tokens.empty()) continue;
    const std::string& key = tokens[0];

    // The values of an entry with `usage` ("box X0 Y0 X1 Y1"), which takes `n` numbers.
    double v[4] = {0, 0, 0, 0};
    auto read_numbers = [&](size_t n, const std::string& usage) {
      if (tokens.size() != n + 1) {
        fail("expected '" + usage + "' (" + std::to_string(n) + " numbers), got " + std::to_string(tokens.size() - 1));
      }
      for (size_t i = 0; i < n; ++i) {
        const std::string& t = tokens[i + 1];
        char* end = nullptr;
        errno = 0;
        v[i] = std::strtod(t.c_str(), &end);
        if (*end != '\0' || errno == ERANGE || !std::isfinite(v[i])) {
          fail("'" + t + "' is not a number (expected '" + usage + "')");
        }
      }
    };
    auto require_size = [&] {
      if (size_line == 0) fail("'" + key + "' before 'size' (the first entry must be 'size WIDTH HEIGHT')");
    };
    auto require_on_floor = [&](double x, double y, const std::string& what) {
      if (x < 0 || x > map.width || y < 0 || y > map.height) {
        fail(what + " (" + fmt(x) + ", " + fmt(y) + ") is outside the floor [0, " + fmt(map.width) + "] x [0, " +
             fmt(map.height) + "]");
      }
    };

    if (key == "size") {
      if (size_line != 0) fail("second 'size' entry (the first is on line " + std::to_string(size_line) + ")");
      read_numbers(2, "size WIDTH HEIGHT");
      if (!(v[0] > 0 && v[0] <= WarehouseMap::kMaxSize && v[1] > 0 && v[1] <= WarehouseMap::kMaxSize)) {
        fail("size " + fmt(v[0]) + " x " + fmt(v[1]) + ": width and height must be in (0, " +
             fmt(WarehouseMap::kMaxSize) + "] metres");
      }
      map.width = v[0];
      map.height = v[1];
      size_line = line_no;
    } else if (key == "box" || key == "shelf" || key == "wall") {
      require_size();
      read_numbers(4, key + " X0 Y0 X1 Y1");
      if (!(v[0] < v[2] && v[1] < v[3])) {
        fail(key + " [" + fmt(v[0]) + ", " + fmt(v[2]) + "] x [" + fmt(v[1]) + ", " + fmt(v[3]) +
             "] is empty (need X0 < X1 and Y0 < Y1)");
      }
      if (v[0] < 0 || v[1] < 0 || v[2] > map.width || v[3] > map.height) {
        fail(key + " [" + fmt(v[0]) + ", " + fmt(v[2]) + "] x [" + fmt(v[1]) + ", " + fmt(v[3]) +
             "] extends outside the floor [0, " + fmt(map.width) + "] x [0, " + fmt(map.height) + "]");
      }
      if (map.boxes.size() >= WarehouseMap::kMaxBoxes) {
        fail("more than " + std::to_string(WarehouseMap::kMaxBoxes) + " boxes");
      }
      map.boxes.push_back(Box{v[0], v[1], v[2], v[3]});
    } else if (key == "start") {
      require_size();
      if (map.has_start) fail("second 'start' entry (the first is on line " + std::to_string(map.start_line) + ")");
      read_numbers(3, "start X Y HEADING_DEG");
      require_on_floor(v[0], v[1], "start");
      map.has_start = true;
      map.start_x = v[0];
      map.start_y = v[1];
      map.start_heading = std::remainder(v[2] * kPi / 180.0, 2.0 * kPi);  // in [-pi, pi]
      if (map.start_heading <= -kPi) map.start_heading += 2.0 * kPi;
      map.start_line = line_no;
    } else if (key == "target") {
      require_size();
      if (map.has_target) fail("second 'target' entry (the first is on line " + std::to_string(map.target_line) + ")");
      read_numbers(2, "target X Y");
      require_on_floor(v[0], v[1], "target");
      map.has_target = true;
      map.target_x = v[0];
      map.target_y = v[1];
      map.target_line = line_no;
    } else {
      fail("unknown entry '" + key + "' (expected size, box, shelf, wall, start or target)");
    }
  }
  if (size_line == 0) throw EnvError(file + ": no 'size WIDTH HEIGHT' entry");
  return map;
}

}  // namespace orchard::envs::agv
