// The operator documentation lists every counter the dataplane exports.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "dataplane/counters.h"

namespace lb::dataplane {
namespace {

TEST(DocsTest, EveryCounterIsDocumented) {
  const char* root = std::getenv("LB_SOURCE_ROOT");
  ASSERT_NE(root, nullptr) << "run through meson test";
  std::ifstream in(std::string(root) + "/docs/dataplane.md");
  ASSERT_TRUE(in) << "docs/dataplane.md";
  std::stringstream text;
  text << in.rdbuf();
  for (const auto& c : kDropReasonInfo) {
    EXPECT_NE(text.str().find("`" + std::string(c.name) + "`"), std::string::npos) << c.name;
  }
  for (const auto& c : kEventInfo) {
    EXPECT_NE(text.str().find("`" + std::string(c.name) + "`"), std::string::npos) << c.name;
  }
}

}  // namespace
}  // namespace lb::dataplane
