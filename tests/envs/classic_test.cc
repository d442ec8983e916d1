// Pendulum-v1, MountainCarContinuous-v0 and Acrobot-v1 (CartPole-v1: classic_cartpole_test.cc).
//
// The trajectory tests hold each env against Gymnasium's published equations, written out here
// independently of the implementation (plugged-in constants, other but equivalent forms).
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "classic/acrobot.h"
#include "classic/mountain_car.h"
#include "classic/pendulum.h"
#include "orchard/envs/check.h"
#include "orchard/envs/registry.h"
#include "orchard/envs/vector_env.h"

using namespace orchard::envs;
using orchard::EnvError;

namespace {

std::string make_error(const std::string& name, const std::vector<std::string>& options) {
  try {
    EnvRegistry::global().make(name, EnvOptions::parse(options));
  } catch (const EnvError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Classic, AllFourAreRegisteredWithGymnasiumSpacesAndTimeLimits) {
  struct Want {
    const char* name;
    const char* obs;
    const char* act;
    int64_t limit;
  };
  for (const Want& w :
       {Want{"CartPole-v1", "[4]", "Discrete(2)", 500}, Want{"Pendulum-v1", "[3]", "Box", 200},
        Want{"MountainCarContinuous-v0", "[2]", "Box", 999}, Want{"Acrobot-v1", "[6]", "Discrete(3)", 500}}) {
    const EnvEntry* e = EnvRegistry::global().find(w.name);
    ASSERT_NE(e, nullptr) << w.name;
    EXPECT_EQ(e->family, "classic");
    auto env = EnvRegistry::global().make(w.name);
    EXPECT_EQ(env->spec().max_episode_steps, w.limit) << w.name;
    EXPECT_NE(env->observation_space().to_string().find(w.obs), std::string::npos)
        << w.name << ": " << env->observation_space().to_string();
    EXPECT_NE(env->action_space().to_string().find(w.act), std::string::npos)
        << w.name << ": " << env->action_space().to_string();
  }
  auto p = EnvRegistry::global().make("Pendulum-v1");
  EXPECT_EQ(p->action_space().low, std::vector<double>{-2.0});
  EXPECT_EQ(p->action_space().high, std::vector<double>{2.0});
  EXPECT_EQ(p->observation_space().high, (std::vector<double>{1.0, 1.0, 8.0}));
  auto m = EnvRegistry::global().make("MountainCarContinuous-v0");
  EXPECT_EQ(m->action_space().low, std::vector<double>{-1.0});
  EXPECT_EQ(m->observation_space().low, (std::vector<double>{-1.2f, -0.07f}));
  EXPECT_EQ(m->observation_space().high, (std::vector<double>{0.6f, 0.07f}));
  auto a = EnvRegistry::global().make("Acrobot-v1");
  EXPECT_EQ(a->observation_space().high,
            (std::vector<double>{1, 1, 1, 1, static_cast<float>(4 * M_PI), static_cast<float>(9 * M_PI)}));
}

TEST(Classic, PassConformanceChecks) {
  for (const char* name : {"Pendulum-v1", "MountainCarContinuous-v0", "Acrobot-v1"}) {
    auto rep = check_env([name] { return EnvRegistry::global().make(name); });
    for (const auto& f : rep.failures) ADD_FAILURE() << name << ": " << f;
    EXPECT_TRUE(rep.ok()) << name;
  }
  // Non-default options too (the noisy Acrobot draws from the env's RNG every step).
  auto rep =
      check_env([] { return EnvRegistry::global().make("Acrobot-v1", EnvOptions::parse({"torque_noise_max=0.5"})); });
  for (const auto& f : rep.failures) ADD_FAILURE() << "noisy Acrobot: " << f;
}

TEST(Classic, OptionsAreCheckedAndDocumented) {
  EXPECT_EQ(make_error("Pendulum-v1", {"gravity=9.81"}),
            "Pendulum-v1: unknown option 'gravity' (allowed: g, max_episode_steps, step_delay_us, x_init, y_init)");
  EXPECT_NE(make_error("Pendulum-v1", {"y_init=9"}).find("y_init=9: expected a number in [0, 8]"), std::string::npos);
  EXPECT_NE(make_error("Acrobot-v1", {"book_or_nips=paper"}).find("expected one of book, nips"), std::string::npos);
  EXPECT_EQ(make_error("MountainCarContinuous-v0", {"reset_low=-0.3", "reset_high=-0.5"}),
            "MountainCarContinuous-v0: option reset_low=-0.3 must not exceed reset_high=-0.5");
  EXPECT_EQ(make_error("Acrobot-v1", {"reset_low=0.2", "reset_high=0.1"}),
            "Acrobot-v1: option reset_low=0.2 must not exceed reset_high=0.1");
  for (const char* name : {"Pendulum-v1", "MountainCarContinuous-v0", "Acrobot-v1"}) {
    EXPECT_EQ(make_error(name, {"max_episode_steps=7"}), "") << name;
    EXPECT_EQ(EnvRegistry::global().make(name, EnvOptions::parse({"max_episode_steps=7"}))->spec().max_episode_steps,
              7);
    // Every option the env reads is documented in its registry entry.
    const EnvEntry* e = EnvRegistry::global().find(name);
    for (const auto& o : e->options) EXPECT_EQ(make_error(name, {o.key + "=" + o.default_value}), "") << o.key;
  }
}

// ---------------------------------------------------------------------------------------------
// Pendulum-v1

namespace {

// The published equations with the default constants plugged in (g = 10, m = l = 1, dt = 0.05).
struct RefPendulum {
  double th, thd;
  double step(double u) {
    u = std::fmin(std::fmax(u, -2.0), 2.0);
    const double an = std::atan2(std::sin(th), std::cos(th));  // angle wrapped to [-pi, pi]
    const double cost = an * an + 0.1 * thd * thd + 0.001 * u * u;
    thd = std::fmin(std::fmax(thd + (15.0 * std::sin(th) + 3.0 * u) * 0.05, -8.0), 8.0);
    th += thd * 0.05;
    return -cost;
  }
};

}  // namespace

TEST(Pendulum, TrajectoryMatchesThePublishedEquations) {
  classic::Pendulum env({});
  float obs[3];
  env.reset(5, obs);
  // Near the top and fast: swinging down and round it reaches the speed limit and goes round.
  RefPendulum ref{0.5, 6.0};
  env.set_state({ref.th, ref.thd});
  int clipped_speed = 0;
  for (int t = 0; t < 60; ++t) {
    // Torque with the motion, against it, beyond the limit, none.
    float u = (ref.thd >= 0 ? 1.0f : -1.0f) * (t % 3 == 0 ? 2.7f : 1.6f);
    if (t >= 30) u = t % 4 == 0 ? 0.0f : -u;
    const double r = ref.step(u);
    if (std::fabs(ref.thd) == 8.0) ++clipped_speed;
    StepResult res = env.step(&u, obs);
    EXPECT_NEAR(env.state().theta, ref.th, 1e-12) << "t=" << t;
    EXPECT_NEAR(env.state().theta_dot, ref.thd, 1e-12) << "t=" << t;
    EXPECT_NEAR(obs[0], std::cos(ref.th), 1e-6);
    EXPECT_NEAR(obs[1], std::sin(ref.th), 1e-6);
    EXPECT_NEAR(obs[2], ref.thd, 1e-6);
    EXPECT_NEAR(res.reward, r, 1e-5) << "t=" << t;
    EXPECT_FALSE(res.terminated);
    EXPECT_FALSE(res.truncated);
  }
  EXPECT_GT(clipped_speed, 0) << "the trajectory should reach the speed limit";
  EXPECT_GT(std::fabs(env.state().theta), 2 * M_PI) << "the trajectory should have gone round";
}

TEST(Pendulum, ClipsTorqueButNotTheAngle) {
  classic::Pendulum env({});
  float obs[3], obs2[3];
  env.reset(0, obs);
  // A torque beyond the limit acts, and costs, as the limit.
  for (float big : {2.0001f, 3.0f, 1e6f, INFINITY}) {
    for (float sign : {1.0f, -1.0f}) {
      env.set_state({0.4, 1.5});
      float u = sign * big;
      StepResult r = env.step(&u, obs);
      classic::Pendulum::State s1 = env.state();
      env.set_state({0.4, 1.5});
      float lim = sign * 2.0f;
      StepResult r2 = env.step(&lim, obs2);
      EXPECT_EQ(s1.theta, env.state().theta) << u;
      EXPECT_EQ(s1.theta_dot, env.state().theta_dot) << u;
      EXPECT_EQ(r.reward, r2.reward) << u;
      EXPECT_NEAR(r.reward, -(0.16 + 0.1 * 2.25 + 0.001 * 4.0), 1e-6);
    }
  }
  // The speed is clipped to [-8, 8].
  env.set_state({M_PI / 2, 7.9});
  float u = 2.0f;
  env.step(&u, obs);
  EXPECT_EQ(env.state().theta_dot, 8.0);
  EXPECT_EQ(obs[2], 8.0f);
  EXPECT_DOUBLE_EQ(env.state().theta, M_PI / 2 + 8.0 * 0.05);
  env.set_state({-M_PI / 2, -7.9});
  u = -2.0f;
  env.step(&u, obs);
  EXPECT_EQ(env.state().theta_dot, -8.0);
  // theta itself is never wrapped (only the observation's cos/sin and the cost see it modulo 2pi).
  env.set_state({4 * M_PI + 0.3, 0.0});
  u = 0.0f;
  StepResult r = env.step(&u, obs);
  EXPECT_NEAR(r.reward, -(0.3 * 0.3), 1e-6);
  EXPECT_GT(env.state().theta, 4 * M_PI);
  EXPECT_NEAR(obs[0], std::cos(0.3 + 0.05 * 0.75 * std::sin(0.3)), 1e-6);
}

TEST(Pendulum, AngleNormalizeIsNumpysFlooredModulo) {
  using P = classic::Pendulum;
  EXPECT_EQ(P::angle_normalize(0.0), 0.0);
  EXPECT_EQ(P::angle_normalize(M_PI), -M_PI);  // [-pi, pi): pi maps to -pi
  EXPECT_EQ(P::angle_normalize(-M_PI), -M_PI);
  EXPECT_NEAR(P::angle_normalize(1.0), 1.0, 1e-15);
  EXPECT_NEAR(P::angle_normalize(-1.0), -1.0, 1e-15);
  EXPECT_NEAR(P::angle_normalize(1.5 * M_PI), -0.5 * M_PI, 1e-15);
  EXPECT_NEAR(P::angle_normalize(-1.5 * M_PI), 0.5 * M_PI, 1e-15);
  EXPECT_NEAR(P::angle_normalize(7.0), 7.0 - 2 * M_PI, 1e-15);
  EXPECT_NEAR(P::angle_normalize(-7.0), -7.0 + 2 * M_PI, 1e-15);
  EXPECT_NEAR(P::angle_normalize(101.0), 101.0 - 16 * 2 * M_PI, 1e-12);
  EXPECT_NEAR(P::angle_normalize(-101.0), -101.0 + 16 * 2 * M_PI, 1e-12);
  for (double x = -50.0; x < 50.0; x += 0.173) {
    double y = P::angle_normalize(x);
    EXPECT_GE(y, -M_PI);
    EXPECT_LT(y, M_PI);
    EXPECT_NEAR(std::remainder(y - x, 2 * M_PI), 0.0, 1e-12) << x;
  }
}

TEST(Pendulum, ResetsInItsRangeNeverTerminatesAndTruncatesAt200) {
  auto env = EnvRegistry::global().make("Pendulum-v1");
  auto* p = dynamic_cast<classic::Pendulum*>(env.get());
  ASSERT_NE(p, nullptr);
  float obs[3];
  bool wide = false;
  for (uint64_t seed = 0; seed < 200; ++seed) {
    env->reset(seed, obs);
    EXPECT_LE(std::fabs(p->state().theta), M_PI);
    EXPECT_LE(std::fabs(p->state().theta_dot), 1.0);
    EXPECT_FLOAT_EQ(obs[0], static_cast<float>(std::cos(p->state().theta)));
    wide |= std::fabs(p->state().theta) > 3.0;
  }
  EXPECT_TRUE(wide);
  float u = 0.5f;
  StepResult r;
  for (int t = 0; t < 200; ++t) {
    ASSERT_FALSE(r.truncated);
    r = env->step(&u, obs);
    EXPECT_FALSE(r.terminated);
    EXPECT_LE(r.reward, 0.0f);
    EXPECT_GE(r.reward, -16.2736044f);
  }
  EXPECT_TRUE(r.truncated);
  // Options: gravity, and Gymnasium's reset bounds.
  auto moon = EnvRegistry::global().make("Pendulum-v1", EnvOptions::parse({"g=1.62", "x_init=0.1", "y_init=0"}));
  auto* pm = dynamic_cast<classic::Pendulum*>(moon.get());
  moon->reset(1, obs);
  EXPECT_LE(std::fabs(pm->state().theta), 0.1);
  EXPECT_EQ(pm->state().theta_dot, 0.0);
  pm->set_state({1.0, 0.0});
  u = 0.0f;
  moon->step(&u, obs);
  EXPECT_NEAR(pm->state().theta_dot, 1.5 * 1.62 * std::sin(1.0) * 0.05, 1e-15);
}

// ---------------------------------------------------------------------------------------------
// MountainCarContinuous-v0

namespace {

// The published equations; Gymnasium stores the state as float32 after every step.
struct RefMountainCar {
  double pos, vel;
  bool done = false;
  double step(double action) {
    double force = std::fmin(std::fmax(action, -1.0), 1.0);
    vel += force * 0.0015 - 0.0025 * std::cos(3 * pos);  // Python's `velocity += ...`
    vel = std::fmin(std::fmax(vel, -0.07), 0.07);
    pos = std::fmin(std::fmax(pos + vel, -1.2), 0.6);
    if (pos == -1.2 && vel < 0) vel = 0;
    done = pos >= 0.45 && vel >= 0;
    double reward = (done ? 100.0 : 0.0) - 0.1 * action * action;
    pos = static_cast<float>(pos);
    vel = static_cast<float>(vel);
    return reward;
  }
};

}  // namespace

TEST(MountainCarContinuous, TrajectoryMatchesThePublishedEquations) {
  classic::MountainCarContinuous env({});
  float obs[2];
  env.reset(2, obs);
  EXPECT_EQ(obs[1], 0.0f);
  EXPECT_GE(obs[0], -0.6f);
  EXPECT_LE(obs[0], -0.4f);
  bool hit_left_wall = false, hit_speed_limit = false;
  // From the valley floor, rocking (a long episode that hits the left wall), and from high on the
  // left hill (fast enough for the speed limit).
  for (RefMountainCar ref : {RefMountainCar{-0.5234567891234, 0.0}, RefMountainCar{-1.0, 0.06}}) {
    env.reset(2, obs);
    env.set_state({ref.pos, ref.vel});
    const bool rocking = ref.vel == 0.0;
    int t = 0;
    for (; t < 200 && !ref.done; ++t) {
      // With the velocity, at full force (and beyond it), then gentler; now and then a little.
      float a = (ref.vel >= 0 ? 1.0f : -1.0f) * (t < 60 ? 1.3f : 0.55f);
      if (t % 7 == 3) a = 0.25f;
      if (!rocking) a = t % 2 ? 0.9f : 1.0f;
      const double r = ref.step(a);
      hit_left_wall |= ref.pos == static_cast<float>(-1.2);
      hit_speed_limit |= std::fabs(ref.vel) == static_cast<float>(0.07);
      StepResult res = env.step(&a, obs);
      EXPECT_EQ(env.state().position, ref.pos) << "t=" << t;
      EXPECT_EQ(env.state().velocity, ref.vel) << "t=" << t;
      EXPECT_EQ(obs[0], static_cast<float>(ref.pos));
      EXPECT_EQ(obs[1], static_cast<float>(ref.vel));
      EXPECT_FLOAT_EQ(res.reward, static_cast<float>(r)) << "t=" << t;  // float32 rewards
      EXPECT_EQ(res.terminated, ref.done) << "t=" << t;
    }
    if (rocking) {
      EXPECT_GE(t, 50);
    }
    EXPECT_TRUE(ref.done) << "the car should reach the goal";
  }
  EXPECT_TRUE(hit_left_wall);
  EXPECT_TRUE(hit_speed_limit);
}

TEST(MountainCarContinuous, GoalTerminatesWithAHundredLessTheActionCost) {
  classic::MountainCarContinuous env({});
  float obs[2];
  env.reset(0, obs);
  env.set_state({0.44, 0.02});
  float a = 0.5f;
  StepResult r = env.step(&a, obs);
  EXPECT_TRUE(r.terminated);
  EXPECT_FALSE(r.truncated);
  EXPECT_NEAR(r.reward, 100.0 - 0.1 * 0.25, 1e-5);
  EXPECT_GE(obs[0], 0.45f);
  // Just short of the goal: no bonus.
  env.reset(0, obs);
  env.set_state({0.40, 0.02});
  r = env.step(&a, obs);
  EXPECT_FALSE(r.terminated);
  EXPECT_NEAR(r.reward, -0.025, 1e-7);
  // At the goal position but moving back (goal_velocity 0): not done.
  env.set_state({0.5, -0.01});
  a = -1.0f;
  r = env.step(&a, obs);
  EXPECT_GE(env.state().position, 0.45);
  EXPECT_FALSE(r.terminated);
  // goal_velocity raises the bar.
  classic::MountainCarContinuous fast(EnvOptions::parse({"goal_velocity=0.05"}));
  fast.reset(0, obs);
  fast.set_state({0.44, 0.02});
  a = 0.5f;
  EXPECT_FALSE(fast.step(&a, obs).terminated);
  fast.set_state({0.44, 0.06});
  EXPECT_TRUE(fast.step(&a, obs).terminated);
}

TEST(MountainCarContinuous, ClipsActionVelocityAndPositionAndStopsAtTheLeftWall) {
  classic::MountainCarContinuous env({});
  float obs[2];
  env.reset(0, obs);
  // An action beyond [-1, 1] pushes as +-1 but is charged unclipped (as Gymnasium's reward).
  env.set_state({-0.5, 0.01});
  float a = 3.0f;
  StepResult r = env.step(&a, obs);
  auto s3 = env.state();
  env.set_state({-0.5, 0.01});
  float one = 1.0f;
  env.step(&one, obs);
  EXPECT_EQ(s3.position, env.state().position);
  EXPECT_EQ(s3.velocity, env.state().velocity);
  EXPECT_NEAR(r.reward, -0.9, 1e-6);
  // Velocity clipped to [-0.07, 0.07].
  env.set_state({-0.52, 0.0699});
  env.step(&one, obs);
  EXPECT_EQ(env.state().velocity, static_cast<float>(0.07));
  EXPECT_EQ(obs[1], static_cast<float>(0.07));
  EXPECT_EQ(env.state().position, static_cast<float>(-0.52 + 0.07));
  env.set_state({-0.3, -0.0699});
  float minus = -1.0f;
  env.step(&minus, obs);
  EXPECT_EQ(env.state().velocity, static_cast<float>(-0.07));
  // Position clipped to 0.6 at the right (which is past the goal).
  env.set_state({0.58, 0.065});
  r = env.step(&one, obs);
  EXPECT_TRUE(r.terminated);
  EXPECT_EQ(env.state().position, static_cast<float>(0.6));
  // The left wall: position clipped to -1.2 and the velocity zeroed (an inelastic collision).
  env.reset(0, obs);
  env.set_state({-1.18, -0.05});
  r = env.step(&minus, obs);
  EXPECT_FALSE(r.terminated);
  EXPECT_EQ(env.state().position, static_cast<float>(-1.2));
  EXPECT_EQ(env.state().velocity, 0.0);
  EXPECT_EQ(obs[0], static_cast<float>(-1.2));
  EXPECT_EQ(obs[1], 0.0f);
  // At the wall gravity beats the engine: even pushing left, the car rolls away to the right.
  env.step(&minus, obs);
  EXPECT_GT(obs[0], static_cast<float>(-1.2));
  EXPECT_NEAR(obs[1], -0.0015 - 0.0025 * std::cos(3 * static_cast<float>(-1.2)), 1e-7);
}

TEST(MountainCarContinuous, TruncatesAt999) {
  auto env = EnvRegistry::global().make("MountainCarContinuous-v0");
  float obs[2];
  env->reset(3, obs);
  float a = 0.0f;  // no force: the car never leaves the valley
  StepResult r;
  int steps = 0;
  do {
    r = env->step(&a, obs);
    ++steps;
    EXPECT_EQ(r.reward, 0.0f);
  } while (!r.terminated && !r.truncated);
  EXPECT_TRUE(r.truncated);
  EXPECT_EQ(steps, 999);
}

// ---------------------------------------------------------------------------------------------
// Acrobot-v1

namespace {

constexpr double kPi = M_PI;

// Sutton & Barto's acrobot with Gymnasium's constants plugged in: m1 = m2 = l1 = 1, lc1 = lc2 =
// 0.5, I1 = I2 = 1, g = 9.8 (and cos(x - pi/2) written as sin(x)).
void acrobot_derivs(const double s[4], double tau, double out[4]) {
  const double t1 = s[0], t2 = s[1], w1 = s[2], w2 = s[3];
  const double d1 = 0.25 + (1.25 + std::cos(t2)) + 2.0;
  const double d2 = 0.25 + 0.5 * std::cos(t2) + 1.0;
  const double phi2 = 0.5 * 9.8 * std::sin(t1 + t2);
  const double phi1 = -0.5 * w2 * w2 * std::sin(t2) - w2 * w1 * std::sin(t2) + 1.5 * 9.8 * std::sin(t1) + phi2;
  const double a2 = (tau + d2 / d1 * phi1 - 0.5 * w1 * w1 * std::sin(t2) - phi2) / (1.25 - d2 * d2 / d1);
  const double a1 = -(d2 * a2 + phi1) / d1;
  out[0] = w1;
  out[1] = w2;
  out[2] = a1;
  out[3] = a2;
}

struct RefAcrobot {
  double s[4];
  int wraps = 0, bounds = 0;
  bool step(double tau) {
    const double h = 0.2;
    double k1[4], k2[4], k3[4], k4[4], y[4];
    acrobot_derivs(s, tau, k1);
    for (int i = 0; i < 4; ++i) y[i] = s[i] + h / 2 * k1[i];
    acrobot_derivs(y, tau, k2);
    for (int i = 0; i < 4; ++i) y[i] = s[i] + h / 2 * k2[i];
    acrobot_derivs(y, tau, k3);
    for (int i = 0; i < 4; ++i) y[i] = s[i] + h * k3[i];
    acrobot_derivs(y, tau, k4);
    for (int i = 0; i < 4; ++i) s[i] += h / 6 * (k1[i] + 2 * k2[i] + 2 * k3[i] + k4[i]);
    for (int i = 0; i < 2; ++i) {
      if (s[i] > kPi || s[i] < -kPi) ++wraps;
      while (s[i] > kPi) s[i] -= 2 * kPi;
      while (s[i] < -kPi) s[i] += 2 * kPi;
    }
    const double lim[2] = {4 * kPi, 9 * kPi};
    for (int i = 0; i < 2; ++i) {
      if (std::fabs(s[2 + i]) > lim[i]) ++bounds;
      s[2 + i] = std::fmin(std::fmax(s[2 + i], -lim[i]), lim[i]);
    }
    return -std::cos(s[0]) - std::cos(s[0] + s[1]) > 1.0;
  }
};

}  // namespace

TEST(Acrobot, TrajectoryMatchesThePublishedEquations) {
  classic::Acrobot env({});
  float obs[6];
  int wraps = 0, terminated = 0;
  // Pumping from near the bottom; with the elbow spinning (angle wraps); with the elbow spinning
  // faster (the tip reaches the bar at step 47).
  for (RefAcrobot ref :
       {RefAcrobot{{0.05, -0.08, 0.03, 0.07}}, RefAcrobot{{0.0, 2.5, 0.0, 8.0}}, RefAcrobot{{0.0, 2.0, 0.0, 10.0}}}) {
    env.reset(4, obs);
    env.set_state({ref.s[0], ref.s[1], ref.s[2], ref.s[3]});
    int t = 0;
    bool done = false;
    for (; t < 60 && !done; ++t) {
      // Torque with the elbow's velocity, every fifth step none.
      int64_t a = t % 5 == 4 ? 1 : (ref.s[3] >= 0 ? 2 : 0);
      done = ref.step(static_cast<double>(a) - 1.0);
      StepResult r = env.step(&a, obs);
      const auto& s = env.state();
      EXPECT_NEAR(s.theta1, ref.s[0], 1e-9) << "t=" << t;
      EXPECT_NEAR(s.theta2, ref.s[1], 1e-9) << "t=" << t;
      EXPECT_NEAR(s.dtheta1, ref.s[2], 1e-9) << "t=" << t;
      EXPECT_NEAR(s.dtheta2, ref.s[3], 1e-9) << "t=" << t;
      const double want_obs[6] = {std::cos(ref.s[0]), std::sin(ref.s[0]), std::cos(ref.s[1]),
                                  std::sin(ref.s[1]), ref.s[2],           ref.s[3]};
      for (int i = 0; i < 6; ++i) EXPECT_NEAR(obs[i], want_obs[i], 2e-6) << "t=" << t << " i=" << i;
      EXPECT_EQ(r.terminated, done) << "t=" << t;
      EXPECT_EQ(r.reward, done ? 0.0f : -1.0f);
    }
    EXPECT_GE(t, 45);
    wraps += ref.wraps;
    terminated += done;
  }
  EXPECT_GT(wraps, 10) << "the trajectories should wrap angles";
  EXPECT_EQ(terminated, 1) << "exactly the last trajectory should reach the bar";
}

TEST(Acrobot, BoundsVelocitiesWrapsAnglesAndMatchesTheEquationsFromFastStates) {
  classic::Acrobot env({});
  float obs[6];
  env.reset(0, obs);
  // Fast, then faster than the bounds: every step clips, and angles go round.
  for (double w : {6.0, 12.0, 30.0}) {
    env.reset(0, obs);
    RefAcrobot ref{{2.5, -2.9, w, -3 * w}};
    env.set_state({ref.s[0], ref.s[1], ref.s[2], ref.s[3]});
    int64_t a = 2;
    bool done = ref.step(1.0);
    StepResult r = env.step(&a, obs);
    const auto& s = env.state();
    EXPECT_NEAR(s.theta1, ref.s[0], 1e-9) << w;
    EXPECT_NEAR(s.theta2, ref.s[1], 1e-9) << w;
    EXPECT_NEAR(s.dtheta1, ref.s[2], 1e-9) << w;
    EXPECT_NEAR(s.dtheta2, ref.s[3], 1e-9) << w;
    EXPECT_EQ(r.terminated, done);
    EXPECT_GE(s.theta1, -kPi);
    EXPECT_LE(s.theta1, kPi);
    EXPECT_GE(s.theta2, -kPi);
    EXPECT_LE(s.theta2, kPi);
    EXPECT_LE(std::fabs(s.dtheta1), 4 * kPi);
    EXPECT_LE(std::fabs(s.dtheta2), 9 * kPi);
    EXPECT_LE(std::fabs(obs[4]), static_cast<float>(4 * kPi));
    EXPECT_LE(std::fabs(obs[5]), static_cast<float>(9 * kPi));
    if (w == 30.0) {
      EXPECT_GE(ref.bounds, 1);
      EXPECT_GE(ref.wraps, 1);
    }
  }
  // The helpers as Gymnasium defines them.
  using A = classic::Acrobot;
  EXPECT_EQ(A::wrap(kPi, -kPi, kPi), kPi);  // inclusive bounds: pi stays pi
  EXPECT_EQ(A::wrap(-kPi, -kPi, kPi), -kPi);
  EXPECT_DOUBLE_EQ(A::wrap(kPi + 0.5, -kPi, kPi), -kPi + 0.5);
  EXPECT_DOUBLE_EQ(A::wrap(-kPi - 0.5, -kPi, kPi), kPi - 0.5);
  EXPECT_NEAR(A::wrap(7 * kPi + 0.25, -kPi, kPi), -kPi + 0.25, 1e-12);
  EXPECT_NEAR(A::wrap(1e9 + 0.0, -kPi, kPi), std::remainder(1e9, 2 * kPi), 1e-6);
  EXPECT_TRUE(std::isnan(A::wrap(INFINITY, -kPi, kPi)));
  EXPECT_EQ(A::bound(20.0, -4 * kPi, 4 * kPi), 4 * kPi);
  EXPECT_EQ(A::bound(-20.0, -4 * kPi, 4 * kPi), -4 * kPi);
  EXPECT_EQ(A::bound(3.0, -4 * kPi, 4 * kPi), 3.0);
}

TEST(Acrobot, TerminatesWhenTheTipIsAboveTheBarWithRewardZero) {
  classic::Acrobot env({});
  float obs[6];
  env.reset(0, obs);
  // Both links straight up: tip height -cos(pi) - cos(2pi) = 2 > 1.
  env.set_state({kPi, 0.0, 0.0, 0.0});
  int64_t a = 1;
  StepResult r = env.step(&a, obs);
  EXPECT_TRUE(r.terminated);
  EXPECT_EQ(r.reward, 0.0f);
  // First link horizontal, second folded down a little: tip below the bar.
  env.reset(0, obs);
  env.set_state({kPi / 2, 0.3, 0.0, 0.0});
  r = env.step(&a, obs);
  const auto& s = env.state();
  EXPECT_LE(-std::cos(s.theta1) - std::cos(s.theta1 + s.theta2), 1.0);
  EXPECT_FALSE(r.terminated);
  EXPECT_EQ(r.reward, -1.0f);
  // The threshold is strict: exactly at height 1 is not terminal.
  EXPECT_FALSE(classic::Acrobot::is_terminal({kPi / 2, kPi / 2, 0, 0}));  // height 1 (to rounding)
  EXPECT_TRUE(classic::Acrobot::is_terminal({kPi / 2 + 0.01, kPi / 2, 0, 0}));
  EXPECT_TRUE(classic::Acrobot::is_terminal({-kPi + 0.3, 0.2, 0, 0}));
  EXPECT_FALSE(classic::Acrobot::is_terminal({0, 0, 0, 0}));
}

TEST(Acrobot, ResetsNearTheBottomAndTruncatesAt500) {
  auto env = EnvRegistry::global().make("Acrobot-v1");
  auto* ac = dynamic_cast<classic::Acrobot*>(env.get());
  ASSERT_NE(ac, nullptr);
  float obs[6];
  for (uint64_t seed = 0; seed < 50; ++seed) {
    env->reset(seed, obs);
    const auto& s = ac->state();
    for (double v : {s.theta1, s.theta2, s.dtheta1, s.dtheta2}) {
      EXPECT_LE(std::fabs(v), 0.1);
      EXPECT_EQ(v, static_cast<float>(v)) << "Gymnasium draws the reset state as float32";
    }
    EXPECT_GT(obs[0], 0.99f);
  }
  // Doing nothing from rest at the bottom never reaches the bar.
  env->reset(0, obs);
  ac->set_state({0, 0, 0, 0});
  int64_t a = 1;
  StepResult r;
  int steps = 0;
  do {
    r = env->step(&a, obs);
    ++steps;
    EXPECT_EQ(r.reward, -1.0f);
  } while (!r.terminated && !r.truncated);
  EXPECT_TRUE(r.truncated);
  EXPECT_EQ(steps, 500);
  // Not exactly 0: Gymnasium's gravity term is cos(theta1 - pi/2), and cos(-pi/2) = 6e-17.
  EXPECT_NEAR(ac->state().theta1, 0.0, 1e-12);
}

TEST(Acrobot, NipsDynamicsDropTheBookTerm) {
  classic::Acrobot book({}), nips(EnvOptions::parse({"book_or_nips=nips"}));
  EXPECT_FALSE(book.nips());
  EXPECT_TRUE(nips.nips());
  float obs[6];
  book.reset(0, obs);
  nips.reset(0, obs);
  // The term is m2 l1 lc2 dtheta1^2 sin(theta2): zero when the first link is still or theta2 = 0.
  for (auto* e : {&book, &nips}) e->set_state({0.3, 0.0, 0.0, 0.0});
  int64_t a = 2;
  book.step(&a, obs);
  nips.step(&a, obs);
  // theta2 moves during the step, so only the first RK stage agrees exactly; still close.
  EXPECT_NEAR(book.state().dtheta2, nips.state().dtheta2, 1e-2);
  for (auto* e : {&book, &nips}) e->set_state({0.3, 1.0, 2.0, 0.0});
  book.step(&a, obs);
  nips.step(&a, obs);
  EXPECT_GT(std::fabs(book.state().dtheta2 - nips.state().dtheta2), 0.1);
}

TEST(Classic, SnapshotsReplayAndVectorEnvsRunBoxActions) {
  for (const char* name : {"Pendulum-v1", "MountainCarContinuous-v0", "Acrobot-v1"}) {
    auto env = EnvRegistry::global().make(name);
    std::vector<float> obs(env->observation_space().numel()), obs2(obs.size());
    env->reset(11, obs.data());
    Rng rng(3);
    std::vector<uint8_t> act(env->action_space().nbytes());
    for (int t = 0; t < 20; ++t) {
      sample_action(env->action_space(), rng, act.data());
      env->step(act.data(), obs.data());
    }
    auto snap = env->snapshot();
    std::vector<std::vector<uint8_t>> acts;
    std::vector<float> rewards;
    for (int t = 0; t < 20 && env->episode_active(); ++t) {
      sample_action(env->action_space(), rng, act.data());
      acts.push_back(act);
      rewards.push_back(env->step(act.data(), obs.data()).reward);
    }
    env->restore(snap);
    for (size_t t = 0; t < acts.size(); ++t) {
      EXPECT_EQ(env->step(acts[t].data(), obs2.data()).reward, rewards[t]) << name;
    }
    EXPECT_EQ(obs, obs2) << name;

    auto v = EnvRegistry::global().make_vector(name, 4, EnvOptions::parse({"max_episode_steps=30"}));
    v->reset(0);
    std::vector<uint8_t> acts4(4 * act.size());
    for (int t = 0; t < 70; ++t) {
      for (size_t i = 0; i < 4; ++i) sample_action(v->spec().action_space, rng, acts4.data() + i * act.size());
      v->step(acts4.data());
    }
    EXPECT_GE(v->episodes_finished(), 8u) << name;
  }
}
