#include "games/roguelike.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

namespace orchard::envs::games {
namespace {

constexpr const char* kName = "Roguelike-v0";
constexpr int kMaxView = 31;
constexpr int kTreeAttempts = 16;  // random walks tried before the always-valid chain layout

// N, E, S, W, in Action order.
constexpr int kDx[4] = {0, 1, 0, -1};
constexpr int kDy[4] = {-1, 0, 1, 0};

// Per Cell: the channel it lights, and whether the floor channel is lit too.
constexpr int kCellChannel[Roguelike::kGoal + 1] = {
    Roguelike::kWallChannel,    Roguelike::kFloorChannel,   Roguelike::kDoorChannel,     Roguelike::kDoorChannel + 1,
    Roguelike::kDoorChannel + 2, Roguelike::kKeyChannel,     Roguelike::kKeyChannel + 1,  Roguelike::kKeyChannel + 2,
    Roguelike::kGoalChannel};
constexpr bool kCellOnFloor[Roguelike::kGoal + 1] = {false, false, false, false, false, true, true, true, true};
static_assert(Roguelike::kMaxColors == 3, "kCellChannel lists 3 colours");

EnvSpec roguelike_spec(const EnvOptions& o) {
  const int64_t view = o.get_int(kName, "view_size", 7, 3, kMaxView);
  if (view % 2 == 0) {
    throw EnvError(std::string(kName) + ": option view_size=" + std::to_string(view) +
                   ": expected an odd integer in [3, " + std::to_string(kMaxView) + "]");
  }
  EnvSpec s;
  s.name = kName;
  s.observation_space = Space::box({view, view, Roguelike::kNumChannels}, 0.0, 1.0, core::DType::kUInt8);
  s.action_space = Space::discrete(Roguelike::kNumActions);
  s.max_episode_steps = o.get_int(kName, "max_episode_steps", 500, 0, 1'000'000'000);
  s.reference = "Procedural roguelike: rooms on a grid joined by a corridor tree (Rogue), keys before doors";
  return s;
}

}  // namespace

Roguelike::Roguelike(const EnvOptions& options)
    : Env(roguelike_spec(options)),
      width_(static_cast<int>(options.get_int(kName, "width", 24, kMinCell, kMaxSide))),
      height_(static_cast<int>(options.get_int(kName, "height", 18, kMinCell, kMaxSide))),
      rooms_(static_cast<int>(options.get_int(kName, "rooms", 6, 2, kMaxCells))),
      view_(static_cast<int>(observation_space().shape[0])),
      num_monsters_(static_cast<int>(options.get_int(kName, "monsters", 3, 0, kMaxMonsters))),
      key_colors_(static_cast<int>(options.get_int(kName, "key_colors", 2, 0, kMaxColors))) {
  // The cell grid: at least one cell to spare (for variety) but not many more than the rooms (so
  // the level fills the map), then cells as square as possible (in quarter steps of aspect ratio),
  // then the fewest cells.
  const int most_cells = rooms_ + std::max(1, rooms_ / 2);
  const int max_cols = width_ / kMinCell, max_rows = height_ / kMinCell;
  if (max_cols * max_rows < rooms_) {
    fail("option rooms=" + std::to_string(rooms_) + ": a " + std::to_string(width_) + "x" + std::to_string(height_) +
         " map holds at most " + std::to_string(max_cols * max_rows) + " rooms (grid cells of at least " +
         std::to_string(kMinCell) + "x" + std::to_string(kMinCell) + "); lower rooms or raise width/height");
  }
  if (key_colors_ > rooms_ - 1) {
    fail("option key_colors=" + std::to_string(key_colors_) + " needs rooms >= " + std::to_string(key_colors_ + 1) +
         " (each locked door leads into another room); got rooms=" + std::to_string(rooms_));
  }
  int best_key[4] = {0, 0, 0, 0};
  grid_cols_ = grid_rows_ = 0;
  for (int cols = 1; cols <= max_cols; ++cols) {
    for (int rows = 1; rows <= max_rows; ++rows) {
      const int cells = cols * rows;
      if (cells < rooms_) continue;
      const int cw = width_ / cols, ch = height_ / rows;
      const int aspect = static_cast<int>(std::lround(4.0 * std::max(cw, ch) / std::min(cw, ch)));
      const int key[4] = {cells > rooms_ ? 0 : 1, cells > most_cells ? 1 : 0, aspect, cells};
      if (grid_cols_ == 0 || std::lexicographical_compare(key, key + 4, best_key, best_key + 4)) {
        std::copy(key, key + 4, best_key);
        grid_cols_ = cols;
        grid_rows_ = rows;
      }
    }
  }
  cell_w_ = width_ / grid_cols_;
  cell_h_ = height_ / grid_rows_;
}

// ---------------------------------------------------------------------------------------------
// Level generation

int Roguelike::farthest_from(int root) {
  const int n = grid_cols_ * grid_rows_;
  for (int c = 0; c < n; ++c) {
    dist_[c] = -1;
    parent_[c] = -1;
  }
  dist_[root] = 0;
  int head = 0, tail = 0, far = root;
  work_[tail++] = static_cast<int16_t>(root);
  while (head < tail) {
    const int c = work_[head++];
    if (dist_[c] > dist_[far]) far = c;
    const int col = c % grid_cols_, row = c / grid_cols_;
    for (int d = 0; d < 4; ++d) {
      const int nc = col + kDx[d], nr = row + kDy[d];
      if (nc < 0 || nc >= grid_cols_ || nr < 0 || nr >= grid_rows_) continue;
      const int next = nr * grid_cols_ + nc;
      const bool edge = tree_parent_[next] == c || tree_parent_[c] == next;
      if (!in_tree_[next] || !edge || dist_[next] >= 0) continue;
      dist_[next] = static_cast<int16_t>(dist_[c] + 1);
      parent_[next] = static_cast<int16_t>(c);
      work_[tail++] = static_cast<int16_t>(next);
    }
  }
  return far;
}

bool Roguelike::below(int cell, int ancestor) const {
  for (int c = cell; c >= 0; c = parent_[c])
    if (c == ancestor) return true;
  return false;
}

bool Roguelike::build_tree() {
  const int n = grid_cols_ * grid_rows_;
  for (int c = 0; c < n; ++c) {
    in_tree_[c] = false;
    tree_parent_[c] = -1;
  }
  // A randomised depth-first walk over the cell grid until it holds `rooms_` cells.
  const int root = static_cast<int>(rng_.below(static_cast<uint64_t>(n)));
  in_tree_[root] = true;
  int sp = 0, count = 1;
  work_[sp++] = static_cast<int16_t>(root);
  while (count < rooms_ && sp > 0) {
    const int c = work_[sp - 1];
    const int col = c % grid_cols_, row = c / grid_cols_;
    int options[4], k = 0;
    for (int d = 0; d < 4; ++d) {
      const int nc = col + kDx[d], nr = row + kDy[d];
      if (nc < 0 || nc >= grid_cols_ || nr < 0 || nr >= grid_rows_) continue;
      if (!in_tree_[nr * grid_cols_ + nc]) options[k++] = nr * grid_cols_ + nc;
    }
    if (k == 0) {
      --sp;
      continue;
    }
    const int next = options[rng_.below(static_cast<uint64_t>(k))];
    in_tree_[next] = true;
    tree_parent_[next] = static_cast<int16_t>(c);
    work_[sp++] = static_cast<int16_t>(next);
    ++count;
  }
  // The start is a random room, the goal the room farthest from it; when that path is too short
  // for the doors, the start moves to the far end instead (a longest path of the tree).
  int pick = static_cast<int>(rng_.below(static_cast<uint64_t>(rooms_)));
  start_cell_ = -1;
  for (int c = 0; c < n && start_cell_ < 0; ++c)
    if (in_tree_[c] && pick-- == 0) start_cell_ = c;
  const int need = std::max(1, key_colors_);
  goal_cell_ = farthest_from(start_cell_);
  if (dist_[goal_cell_] < need) {
    start_cell_ = goal_cell_;
    goal_cell_ = farthest_from(start_cell_);
  }
  return dist_[goal_cell_] >= need;
}

void Roguelike::build_snake_tree() {
  const int n = grid_cols_ * grid_rows_;
  for (int c = 0; c < n; ++c) {
    in_tree_[c] = false;
    tree_parent_[c] = -1;
  }
  int prev = -1;
  for (int k = 0; k < rooms_; ++k) {
    const int row = k / grid_cols_;
    const int col = row % 2 == 0 ? k % grid_cols_ : grid_cols_ - 1 - k % grid_cols_;
    const int c = row * grid_cols_ + col;
    in_tree_[c] = true;
    tree_parent_[c] = static_cast<int16_t>(prev);
    if (prev < 0) start_cell_ = c;
    prev = c;
  }
  goal_cell_ = farthest_from(start_cell_);  // the other end of the chain: rooms_ - 1 >= key_colors_
}

void Roguelike::carve() {
  State& s = state_;
  std::memset(s.cell, kWall, sizeof(s.cell));
  const int n = grid_cols_ * grid_rows_;
  // Each room covers its cell's centre and leaves the cell's border as wall, so rooms in
  // neighbouring cells are at least two walls apart and corridors between centres cannot meet.
  for (int c = 0; c < n; ++c) {
    if (!in_tree_[c]) continue;
    const int c0 = (c % grid_cols_) * cell_w_, r0 = (c / grid_cols_) * cell_h_;
    const int cx = c0 + cell_w_ / 2, cy = r0 + cell_h_ / 2;
    const int max_x1 = c0 + cell_w_ - 2, max_y1 = r0 + cell_h_ - 2;
    Room& room = room_[c];
    room.x0 = c0 + 1 + static_cast<int>(rng_.below(static_cast<uint64_t>((cx - c0 - 1) / 2 + 1)));
    room.x1 = max_x1 - static_cast<int>(rng_.below(static_cast<uint64_t>((max_x1 - cx) / 2 + 1)));
    room.y0 = r0 + 1 + static_cast<int>(rng_.below(static_cast<uint64_t>((cy - r0 - 1) / 2 + 1)));
    room.y1 = max_y1 - static_cast<int>(rng_.below(static_cast<uint64_t>((max_y1 - cy) / 2 + 1)));
    for (int y = room.y0; y <= room.y1; ++y)
      for (int x = room.x0; x <= room.x1; ++x) s.at(x, y) = kFloor;
  }
  for (int c = 0; c < n; ++c) {
    const int p = tree_parent_[c];
    if (!in_tree_[c] || p < 0) continue;
    const int a = std::min(c, p), b = std::max(c, p);  // a is left of or above b
    if (a / grid_cols_ == b / grid_cols_) {
      const int y = (a / grid_cols_) * cell_h_ + cell_h_ / 2;
      for (int x = room_[a].x1 + 1; x < room_[b].x0; ++x) s.at(x, y) = kFloor;
    } else {
      const int x = (a % grid_cols_) * cell_w_ + cell_w_ / 2;
      for (int y = room_[a].y1 + 1; y < room_[b].y0; ++y) s.at(x, y) = kFloor;
    }
  }
}

template <class RoomOk>
int Roguelike::collect_free_cells(RoomOk room_ok, bool allow_player) {
  const State& s = state_;
  const int cells = grid_cols_ * grid_rows_;
  int n = 0;
  for (int c = 0; c < cells; ++c) {
    if (!in_tree_[c] || !room_ok(c)) continue;
    for (int y = room_[c].y0; y <= room_[c].y1; ++y) {
      for (int x = room_[c].x0; x <= room_[c].x1; ++x) {
        if (s.at(x, y) != kFloor || (!allow_player && x == s.player_x && y == s.player_y)) continue;
        free_cells_[n++] = static_cast<uint16_t>(y * kMaxSide + x);
      }
    }
  }
  return n;
}

void Roguelike::pick_free_cell(int n, int* x, int* y) {
  const int i = free_cells_[rng_.below(static_cast<uint64_t>(n))];
  *x = i % kMaxSide;
  *y = i / kMaxSide;
}

void Roguelike::place_items() {
  State& s = state_;
  s.player_x = s.player_y = -1;
  s.hp = kPlayerHp;
  s.keys = 0;
  s.num_monsters = 0;
  // Every room has at least one interior cell, and the start and goal rooms differ.
  int x = 0, y = 0;
  pick_free_cell(collect_free_cells([&](int c) { return c == start_cell_; }, false), &x, &y);
  s.player_x = x;
  s.player_y = y;
  pick_free_cell(collect_free_cells([&](int c) { return c == goal_cell_; }, false), &x, &y);
  s.at(x, y) = kGoal;

  // The start-to-goal path path[0] = start .. path[len] = goal; doors go on key_colors_ distinct
  // edges of it, each in the doorway of the room farther from the start.
  int16_t path[kMaxCells];
  const int len = dist_[goal_cell_];
  for (int c = goal_cell_, i = len; c >= 0; c = parent_[c], --i) path[i] = static_cast<int16_t>(c);
  int edges[kMaxCells];
  for (int i = 0; i < len; ++i) edges[i] = i + 1;
  for (int i = 0; i < key_colors_; ++i) {
    const int j = i + static_cast<int>(rng_.below(static_cast<uint64_t>(len - i)));
    std::swap(edges[i], edges[j]);
  }
  std::sort(edges, edges + key_colors_);
  int colour[kMaxColors] = {0, 1, 2};
  for (int i = key_colors_ - 1; i > 0; --i) std::swap(colour[i], colour[rng_.below(static_cast<uint64_t>(i + 1))]);

  for (int k = 0; k < key_colors_; ++k) {
    const int child = path[edges[k]], parent = path[edges[k] - 1];
    const Room& room = room_[child];
    int dx, dy;
    if (child / grid_cols_ == parent / grid_cols_) {  // same row of cells: a horizontal corridor
      dy = (child / grid_cols_) * cell_h_ + cell_h_ / 2;
      dx = child > parent ? room.x0 - 1 : room.x1 + 1;
    } else {
      dx = (child % grid_cols_) * cell_w_ + cell_w_ / 2;
      dy = child > parent ? room.y0 - 1 : room.y1 + 1;
    }
    s.at(dx, dy) = static_cast<uint8_t>(kDoor + colour[k]);
    // The key lies where the player can get it before this door (earlier doors' keys come
    // earlier still, by induction along the path). Those rooms hold the start room and at
    // least k more, so there is a free cell, if need be under the player.
    auto before_door = [&](int c) { return !below(c, child); };
    int n = collect_free_cells(before_door, false);
    if (n == 0) n = collect_free_cells(before_door, true);
    pick_free_cell(n, &x, &y);
    s.at(x, y) = static_cast<uint8_t>(kKey + colour[k]);
  }

  // Monsters on distinct free cells outside the start room (fewer when those run out).
  const int n = collect_free_cells([&](int c) { return c != start_cell_; }, false);
  for (int m = 0; m < num_monsters_ && m < n; ++m) {
    std::swap(free_cells_[m], free_cells_[m + static_cast<int>(rng_.below(static_cast<uint64_t>(n - m)))]);
    s.monsters[s.num_monsters++] = Monster{free_cells_[m] % kMaxSide, free_cells_[m] / kMaxSide};
  }
}

void Roguelike::generate() {
  bool ok = false;
  for (int attempt = 0; attempt < kTreeAttempts && !ok; ++attempt) ok = build_tree();
  if (!ok) build_snake_tree();
  carve();
  place_items();
}

// ---------------------------------------------------------------------------------------------
// Episode

void Roguelike::do_reset(std::optional<uint64_t> seed, void* obs) {
  if (seed) rng_.seed(*seed);
  state_ = State{};
  generate();
  render(static_cast<uint8_t*>(obs));
}

int Roguelike::monster_at(int x, int y) const {
  for (int i = 0; i < state_.num_monsters; ++i)
    if (state_.monsters[i].x == x && state_.monsters[i].y == y) return i;
  return -1;
}

bool Roguelike::monster_can_enter(int x, int y) const {
  const State& s = state_;
  return x >= 0 && x < width_ && y >= 0 && y < height_ && s.at(x, y) == kFloor &&
         (x != s.player_x || y != s.player_y) && !monster_map_[y * kMaxSide + x];
}

StepResult Roguelike::do_step(const void* action, void* obs) {
  int64_t a;
  std::memcpy(&a, action, sizeof(a));
  State& s = state_;
  StepResult result;

  if (a <= kWest) {
    const int x = s.player_x + kDx[a], y = s.player_y + kDy[a];
    if (x >= 0 && x < width_ && y >= 0 && y < height_) {
      const uint8_t cell = s.at(x, y);
      if (int m = monster_at(x, y); m >= 0) {
        // Bumping a monster kills it.
        for (int j = m; j + 1 < s.num_monsters; ++j) s.monsters[j] = s.monsters[j + 1];
        --s.num_monsters;
      } else if (cell != kWall && (cell < kDoor || cell >= kDoor + kMaxColors)) {
        s.player_x = x;
        s.player_y = y;
        if (cell == kGoal) {
          render(static_cast<uint8_t*>(obs));
          return {kGoalReward, true, false};
        }
      }
    }
  } else if (a == kInteract) {
    uint8_t& here = s.at(s.player_x, s.player_y);
    if (here >= kKey && here < kKey + kMaxColors) {
      s.keys |= 1u << (here - kKey);
      here = kFloor;
    } else {
      for (int d = 0; d < 4; ++d) {
        const int x = s.player_x + kDx[d], y = s.player_y + kDy[d];
        if (x < 0 || x >= width_ || y < 0 || y >= height_) continue;
        const uint8_t cell = s.at(x, y);
        if (cell >= kDoor && cell < kDoor + kMaxColors && (s.keys >> (cell - kDoor) & 1u)) s.at(x, y) = kFloor;
      }
    }
  }

  // Monsters: attack when adjacent, else chase when close, else wander.
  for (int i = 0; i < s.num_monsters; ++i) monster_map_[s.monsters[i].y * kMaxSide + s.monsters[i].x] = 1;
  for (int i = 0; i < s.num_monsters; ++i) {
    Monster& m = s.monsters[i];
    const int dx = s.player_x - m.x, dy = s.player_y - m.y;
    const int adx = std::abs(dx), ady = std::abs(dy);
    if (adx + ady == 1) {
      --s.hp;
      result.reward -= kDamagePenalty;
      continue;
    }
    auto try_move = [&](int x, int y) {
      if (!monster_can_enter(x, y)) return false;
      monster_map_[m.y * kMaxSide + m.x] = 0;
      monster_map_[y * kMaxSide + x] = 1;
      m.x = x;
      m.y = y;
      return true;
    };
    if (std::max(adx, ady) <= kSightRadius) {
      const int sx = (dx > 0) - (dx < 0), sy = (dy > 0) - (dy < 0);
      // Close the larger gap first; when that way is blocked, try the other axis.
      if (adx >= ady) {
        if (!try_move(m.x + sx, m.y) && sy != 0) try_move(m.x, m.y + sy);
      } else {
        if (!try_move(m.x, m.y + sy) && sx != 0) try_move(m.x + sx, m.y);
      }
    } else {
      const int d = static_cast<int>(rng_.below(8));
      if (d < 4) try_move(m.x + kDx[d], m.y + kDy[d]);
    }
  }
  for (int i = 0; i < s.num_monsters; ++i) monster_map_[s.monsters[i].y * kMaxSide + s.monsters[i].x] = 0;
  result.terminated = s.hp <= 0;
  render(static_cast<uint8_t*>(obs));
  return result;
}

void Roguelike::render(uint8_t* obs) const {
  const State& s = state_;
  const int v = view_, half = view_ / 2;
  std::memset(obs, 0, static_cast<size_t>(v * v * kNumChannels));
  for (int r = 0; r < v; ++r) {
    const int y = s.player_y + r - half;
    uint8_t* row = obs + r * v * kNumChannels;
    for (int c = 0; c < v; ++c) {
      const int x = s.player_x + c - half;
      uint8_t* o = row + c * kNumChannels;
      if (x < 0 || x >= width_ || y < 0 || y >= height_) {
        o[kWallChannel] = 1;
        continue;
      }
      const uint8_t cell = s.at(x, y);
      o[kCellChannel[cell]] = 1;
      if (kCellOnFloor[cell]) o[kFloorChannel] = 1;
    }
  }
  for (int i = 0; i < s.num_monsters; ++i) {
    const int c = s.monsters[i].x - s.player_x + half, r = s.monsters[i].y - s.player_y + half;
    if (c >= 0 && c < v && r >= 0 && r < v) obs[(r * v + c) * kNumChannels + kMonsterChannel] = 1;
  }
  for (int k = 0; k < kMaxColors; ++k) {
    if (!(s.keys >> k & 1u)) continue;
    for (int i = 0; i < v * v; ++i) obs[i * kNumChannels + kCarriedKeyChannel + k] = 1;
  }
  const int hp_cells = std::min(std::max(s.hp, 0), v * v);
  for (int i = 0; i < hp_cells; ++i) obs[i * kNumChannels + kHealthChannel] = 1;
}

void Roguelike::do_snapshot(std::vector<uint8_t>* out) const {
  put_state(out, state_, rng_);
}

bool Roguelike::do_restore(const uint8_t*& in, const uint8_t* end) {
  return get_state(in, end, &state_, &rng_);
}

}  // namespace orchard::envs::games
