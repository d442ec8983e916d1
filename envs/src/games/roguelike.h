// Roguelike-v0: a small procedurally generated dungeon with keys, locked doors and monsters,
// seen through an egocentric window.
//
// Reference: no single source; the level generator follows the classic "rooms on a grid joined
// by a spanning tree of corridors" layout of roguelikes (Rogue, 1980), the lock-and-key placement
// follows the usual key-before-door ordering on the start-to-goal path (as in MiniGrid's
// KeyCorridor / ObstructedMaze), and the observation is MiniGrid-style egocentric (Chevalier-
// Boisvert et al. 2018) with one binary channel per category instead of MiniGrid's object codes.
//
// Level (generated from the episode's seed):
//  - The map is cut into a grid of cells of at least kMinCell x kMinCell; `rooms` cells are chosen
//    by a randomised depth-first walk, each holds one walled room covering the cell's centre, and
//    every edge of the walk becomes a straight corridor between the centres of two neighbouring
//    cells. Corridors never meet, so each room is entered only through its corridors' doorways.
//  - The player starts in a random room; the goal (stairs) is in the room farthest from it.
//  - `key_colors` locked doors sit in doorways on the start-to-goal path, each on the doorway of
//    the room farther from the start. The key of each door lies in a room that is reachable
//    without passing that door or any door after it, so every level is solvable.
//  - `monsters` monsters start on free room cells outside the start room.
//
// Rules per step: the player moves (N/E/S/W) onto floor, keys and the goal; walls and locked doors
// block; moving into a monster kills it. Interact (4) picks up the key under the player, or, when
// there is none, opens every neighbouring locked door whose key the player carries (the door
// becomes floor; the key is kept). Then each monster, in turn: attacks a player on a neighbouring
// cell (1 damage, reward -kDamagePenalty), else steps toward a player within kSightRadius
// (Chebyshev), else wanders with probability 1/2. Monsters walk on plain floor only (no doors,
// keys or goal). Reaching the goal gives +1 and terminates; hp 0 terminates.
//
// Observation: uint8 Box [view_size, view_size, kNumChannels] in {0, 1}, indexed [row][column]
// [channel], centred on the player with north up: row r, column c shows map cell
// (player_x + c - view_size / 2, player_y + r - view_size / 2). Cells off the map read as wall.
// Actions: Discrete(6): 0 north (y - 1), 1 east (x + 1), 2 south (y + 1), 3 west (x - 1),
// 4 pick up / use, 5 wait.
#pragma once

#include <cstdint>
#include <type_traits>

#include "orchard/envs/env.h"
#include "orchard/envs/rng.h"

namespace orchard::envs::games {

class Roguelike final : public Env {
 public:
  static constexpr int kMaxSide = 64;      // width and height are at most this
  static constexpr int kMinCell = 5;       // a room's grid cell is at least 5 x 5 (wall, 3 floor, wall)
  static constexpr int kMaxColors = 3;     // key / door colours: 0 red, 1 green, 2 blue
  static constexpr int kMaxMonsters = 16;
  static constexpr int kMaxCells = (kMaxSide / kMinCell) * (kMaxSide / kMinCell);
  static constexpr int kPlayerHp = 5;
  static constexpr int kSightRadius = 3;   // monsters chase a player this close (Chebyshev)
  static constexpr float kGoalReward = 1.0f;
  static constexpr float kDamagePenalty = 0.1f;  // per point of damage taken

  // One byte per map cell. Doors and keys carry their colour: kDoor + c, kKey + c.
  enum Cell : uint8_t { kWall = 0, kFloor = 1, kDoor = 2, kKey = kDoor + kMaxColors, kGoal = kKey + kMaxColors };

  // Observation channels. Floor is set under keys, the goal, monsters and the player; carried
  // keys light their whole plane; health lights the first hp cells of its plane in row-major order.
  enum Channel : int {
    kWallChannel = 0,
    kFloorChannel = 1,
    kDoorChannel = 2,  // + colour: a locked door
    kKeyChannel = kDoorChannel + kMaxColors,  // + colour: a key on the floor
    kMonsterChannel = kKeyChannel + kMaxColors,
    kGoalChannel,
    kCarriedKeyChannel,  // + colour
    kHealthChannel = kCarriedKeyChannel + kMaxColors,
    kNumChannels
  };

  enum Action : int64_t { kNorth = 0, kEast = 1, kSouth = 2, kWest = 3, kInteract = 4, kWait = 5 };
  static constexpr int kNumActions = 6;

  struct Monster {
    int32_t x, y;
  };

  // The full game state. Invariant: cells outside [0, width) x [0, height) are unused; monsters
  // stand on kFloor cells, distinct from each other and from the player.
  struct State {
    uint8_t cell[kMaxSide * kMaxSide];  // cell[y * kMaxSide + x]: a Cell
    int32_t player_x, player_y;
    int32_t hp;
    uint32_t keys;  // bit c: the player carries the key of colour c
    int32_t num_monsters;
    Monster monsters[kMaxMonsters];

    uint8_t& at(int x, int y) { return cell[y * kMaxSide + x]; }
    uint8_t at(int x, int y) const { return cell[y * kMaxSide + x]; }
  };
  static_assert(std::has_unique_object_representations_v<State>, "State must have no padding");

  // Options (defaults): width (24), height (18), rooms (6), view_size (7, odd), monsters (3),
  // key_colors (2), max_episode_steps (500; 0 = none). Throws EnvError when the rooms do not fit
  // the map or key_colors needs more rooms. See docs/envs/games.md.
  explicit Roguelike(const EnvOptions& options);

  int width() const { return width_; }
  int height() const { return height_; }
  int view_size() const { return view_; }

  // The game state, for tests and tools. set_state() takes effect on the next step; render()
  // writes the observation of the current state into `obs`.
  const State& state() const { return state_; }
  void set_state(const State& s) { state_ = s; }
  void render(uint8_t* obs) const;
  bool supports_snapshot() const override { return true; }

 protected:
  void do_reset(std::optional<uint64_t> seed, void* obs) override;
  StepResult do_step(const void* action, void* obs) override;
  void do_snapshot(std::vector<uint8_t>* out) const override;
  bool do_restore(const uint8_t*& in, const uint8_t* end) override;

 private:
  struct Room {
    int32_t x0, y0, x1, y1;  // interior, inclusive
  };

  // Level generation (reset only; uses the fixed scratch arrays below).
  void generate();
  bool build_tree();       // picks the rooms and corridors; false when the goal path is too short
  void build_snake_tree();  // fallback: a chain of cells in boustrophedon order
  void carve();
  void place_items();
  int farthest_from(int root);  // fills dist_/parent_ from `root`; returns the farthest room cell
  bool below(int cell, int ancestor) const;  // `ancestor` is on the path from the start to `cell`
  // Fills free_cells_ with the interior kFloor cells of the rooms accepted by `room_ok` (without
  // the player's cell unless `allow_player`); returns how many.
  template <class RoomOk>
  int collect_free_cells(RoomOk room_ok, bool allow_player);
  // One of the first n free_cells_, uniformly; writes its coordinates.
  void pick_free_cell(int n, int* x, int* y);

  bool monster_can_enter(int x, int y) const;  // during the monster phase
  int monster_at(int x, int y) const;

  // Options.
  int width_, height_, rooms_, view_, num_monsters_, key_colors_;
  // The cell grid, chosen in the constructor.
  int grid_cols_, grid_rows_, cell_w_, cell_h_;

  State state_{};
  Rng rng_;

  // Generation scratch, indexed by grid cell (col + row * grid_cols_).
  bool in_tree_[kMaxCells];
  int16_t tree_parent_[kMaxCells];  // parent in the generating walk, -1 at its root
  int16_t parent_[kMaxCells];       // parent when rooted at the start room
  int16_t dist_[kMaxCells];
  int16_t work_[kMaxCells];         // the walk's stack, or a BFS queue
  Room room_[kMaxCells];
  uint16_t free_cells_[kMaxSide * kMaxSide];  // y * kMaxSide + x
  // Step scratch: 1 where a monster stands, during the monster phase only (all 0 outside it).
  uint8_t monster_map_[kMaxSide * kMaxSide] = {};
  int start_cell_, goal_cell_;
};

}  // namespace orchard::envs::games
