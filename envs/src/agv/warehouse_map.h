// The warehouse floor of the AGV environments: a rectangle with axis-aligned boxes (shelf rows,
// partition walls) on it, generated procedurally from an Rng or read from a small text map file.
//
// Map file format (documented with examples in docs/envs/agv.md and examples/maps/):
//
//   # comment (anything after '#')
//   size  WIDTH HEIGHT          the floor [0, WIDTH] x [0, HEIGHT] in metres; must come first;
//                               everything outside it is solid wall
//   box   X0 Y0 X1 Y1           a solid box [X0, X1] x [Y0, Y1] (X0 < X1, Y0 < Y1, inside the floor);
//   shelf X0 Y0 X1 Y1           `shelf` and `wall` are synonyms of `box`
//   wall  X0 Y0 X1 Y1
//   start X Y HEADING_DEG       optional fixed start pose of the vehicle (else random each episode)
//   target X Y                  optional fixed target (first position of a moving target)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "orchard/envs/rng.h"

namespace orchard::envs::agv {

constexpr double kPi = 3.14159265358979323846;

// A solid axis-aligned box [x0, x1] x [y0, y1] in metres; x0 < x1 and y0 < y1.
struct Box {
  double x0, y0, x1, y1;
};

// Layouts of the procedural generator: about 20 m x 20 m with one block of shelf rows, or
// about 40 m x 30 m with two differently oriented blocks behind a partition wall with doorways.
enum class Layout { kSimple, kComplex };

struct WarehouseMap {
  static constexpr double kMaxSize = 1000.0;     // metres, either side (map files)
  static constexpr size_t kMaxBoxes = 10000;     // map files
  static constexpr double kSimpleWidth = 20.0, kSimpleHeight = 20.0;
  static constexpr double kComplexWidth = 40.0, kComplexHeight = 30.0;

  double width = 0, height = 0;
  std::vector<Box> boxes;  // all inside [0, width] x [0, height]

  // Optional fixed poses from a map file; `*_line` is the file line, for error messages.
  bool has_start = false, has_target = false;
  double start_x = 0, start_y = 0, start_heading = 0;  // heading in radians, counter-clockwise from +x
  double target_x = 0, target_y = 0;
  int start_line = 0, target_line = 0;

  double diagonal() const;
  // Euclidean distance from (x, y) to the nearest solid point: a box (0 inside one) or the
  // floor's border (0 outside the floor). A circle of radius r at (x, y) is collision-free
  // exactly when clearance(x, y) >= r.
  double clearance(double x, double y) const;
  // True when a point moving in a straight line from (ax, ay) to (bx, by) keeps at least `margin`
  // from the border and from every box grown by `margin` on each side (a square-cornered margin,
  // so slightly stricter than clearance() >= margin near box corners).
  bool segment_clear(double ax, double ay, double bx, double by, double margin) const;
};

// Replaces `map` (size and boxes; clears fixed poses) with a layout drawn from `rng`. Every part
// of the free space is reachable for a disc of diameter up to 1.8 m: shelf rows stand at least
// 2 m from the block's edges, aisles are at least 2 m wide and doorways 2.5 m. Keeps the boxes'
// capacity, so repeated calls do not allocate once it has grown.
void generate_layout(Layout layout, Rng& rng, WarehouseMap* map);

// Reads a map file. Throws EnvError "<env>: map file '<path>' line <n>: <problem>" for a file
// that cannot be opened, an unknown entry, a wrong number of values, a value that is not a
// number, a box that is empty or outside the floor, a duplicate `size`/`start`/`target`, or an
// entry before `size`; "...: no 'size WIDTH HEIGHT' entry" for a file without one.
WarehouseMap load_map_file(const std::string& env, const std::string& path);

}  // namespace orchard::envs::agv
