#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>

#include <chrono>
#include <thread>

#include "orchard/core/shutdown.h"
#include "support/child_process.h"

using orchard::core::Shutdown;
using orchard::testing::ChildProcess;
using orchard::testing::orchard_bin;

TEST(Signals, SigtermMakesAProcessFlushAndExitZero) {
  ChildProcess child({orchard_bin("orchard_signal_child")});
  ASSERT_TRUE(child.wait_for_output("ready", 10000)) << child.output();
  child.signal(SIGTERM);
  EXPECT_EQ(child.wait(10000), 0) << child.output();
  EXPECT_NE(child.output().find("signal 15: finished in-flight work, flushed"), std::string::npos) << child.output();
}

TEST(Signals, SigintMakesAProcessFlushAndExitZero) {
  ChildProcess child({orchard_bin("orchard_signal_child")});
  ASSERT_TRUE(child.wait_for_output("ready", 10000)) << child.output();
  child.signal(SIGINT);
  EXPECT_EQ(child.wait(10000), 0) << child.output();
  EXPECT_NE(child.output().find("signal 2:"), std::string::npos) << child.output();
}

TEST(Signals, SecondSignalKillsAStuckProcess) {
  ChildProcess child({orchard_bin("orchard_signal_child"), "stuck"});
  ASSERT_TRUE(child.wait_for_output("ready", 10000)) << child.output();
  child.signal(SIGTERM);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_TRUE(child.running()) << "first signal only asks for shutdown";
  child.signal(SIGTERM);
  EXPECT_EQ(child.wait(10000), 128 + SIGTERM);
}

TEST(Signals, RequestWakesWaitersAndTheFileDescriptor) {
  Shutdown::install();
  Shutdown::reset_for_testing();
  EXPECT_FALSE(Shutdown::wait_for(std::chrono::milliseconds(20)));
  std::thread t([] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    Shutdown::request();
  });
  EXPECT_TRUE(Shutdown::wait_for(std::chrono::milliseconds(5000)));
  t.join();
  pollfd p{Shutdown::fd(), POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 0), 1);
  EXPECT_EQ(Shutdown::signal_number(), 0);
  Shutdown::reset_for_testing();
  EXPECT_FALSE(Shutdown::requested());
}
