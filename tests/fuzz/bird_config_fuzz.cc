// libFuzzer target: lb-bird-gen's node configuration (YAML, from a ConfigMap). Whatever the
// input, parsing returns a config or an error, never throws or crashes; a config that
// parses renders, and the rendered text keeps every reason inside its comment line.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "control/bird/node_config.h"
#include "control/bird/render.h"
#include "tests/fuzz/check.h"

namespace {

using lb::fuzz::Check;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  // A password_file names the input itself: the reader is part of what is fuzzed.
  auto reader = [&](const std::string& path) -> absl::StatusOr<std::string> { return path; };
  auto config = lb::control::bird::ParseNodeConfig(text, reader);
  if (!config.ok()) return 0;
  // A reason (any bytes) changes no line structure: it stays inside its comments.
  auto lines = [](const std::string& t) { return std::count(t.begin(), t.end(), '\n'); };
  const std::string reason = "lbd unhealthy: " + text.substr(0, 64);
  Check(lines(lb::control::bird::RenderBirdConfig(*config, {false, reason})) ==
            lines(lb::control::bird::RenderBirdConfig(*config, {false, "x"})),
        "a reason stays on its comment lines");
  // Passwords reach bird.conf inside quotes: nothing in them may end the string or line.
  for (const auto& peer : config->peers) {
    for (char ch : peer.password) {
      Check(ch != '"' && ch != '\\' && !std::iscntrl(static_cast<unsigned char>(ch)), "a password stays quoted");
    }
  }
  return 0;
}
