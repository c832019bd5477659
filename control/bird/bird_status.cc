#include "control/bird/bird_status.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace lb::control::bird {
namespace {

// Debian's abseil has its own string_view.
absl::string_view Abseil(std::string_view s) { return absl::string_view(s.data(), s.size()); }

std::vector<absl::string_view> Fields(absl::string_view line) { return absl::StrSplit(line, ' ', absl::SkipEmpty()); }

// "2026-12-07" "02:07:45" (iso long), in `zone`.
std::optional<absl::Time> ParseSince(absl::string_view date, absl::string_view time, absl::TimeZone zone) {
  absl::Time t;
  std::string error;
  if (!absl::ParseTime("%Y-%m-%d %H:%M:%S", absl::StrCat(date, " ", time), zone, &t, &error)) return std::nullopt;
  return t;
}

// The value of a "  Key:   value" detail line, or nullopt when `line` is not `key`'s.
std::optional<absl::string_view> Detail(absl::string_view line, absl::string_view key) {
  const absl::string_view stripped = absl::StripLeadingAsciiWhitespace(line);
  if (!absl::StartsWith(stripped, key) || stripped.size() <= key.size() || stripped[key.size()] != ':')
    return std::nullopt;
  return absl::StripAsciiWhitespace(stripped.substr(key.size() + 1));
}

}  // namespace

std::vector<BgpSession> ParseBgpSessions(std::string_view text, absl::TimeZone zone) {
  std::vector<BgpSession> out;
  BgpSession* current = nullptr;  // the BGP protocol whose detail lines follow
  for (absl::string_view line : absl::StrSplit(Abseil(text), '\n')) {
    if (line.empty()) continue;
    if (!absl::ascii_isspace(static_cast<unsigned char>(line[0]))) {
      // A protocol's line: Name Proto Table State Since(date time) Info...
      current = nullptr;
      const auto f = Fields(line);
      if (f.size() < 6 || f[1] != "BGP") continue;
      BgpSession& s = out.emplace_back();
      s.name = std::string(f[0]);
      s.state = std::string(f[3]);
      s.since = ParseSince(f[4], f[5], zone);
      if (f.size() > 6) s.bgp_state = std::string(f[6]);
      current = &s;
      continue;
    }
    if (current == nullptr) continue;
    if (auto state = Detail(line, "BGP state")) {
      current->bgp_state = std::string(*state);
    } else if (auto neighbor = Detail(line, "Neighbor address")) {
      current->neighbor = std::string(neighbor->substr(0, neighbor->find('%')));
    } else if (auto error = Detail(line, "Last error")) {
      current->last_error = std::string(*error);
    } else if (auto routes = Detail(line, "Routes")) {
      // "0 imported, 1 exported, 0 preferred"
      for (absl::string_view part : absl::StrSplit(*routes, ',')) {
        const auto words = Fields(part);
        uint64_t n = 0;
        if (words.size() != 2 || !absl::SimpleAtoi(words[0], &n)) continue;
        if (words[1] == "exported") current->routes_exported += n;
        if (words[1] == "imported") current->routes_imported += n;
      }
    }
  }
  return out;
}

std::vector<BfdSession> ParseBfdSessions(std::string_view text, absl::TimeZone zone) {
  std::vector<BfdSession> out;
  for (absl::string_view line : absl::StrSplit(Abseil(text), '\n')) {
    // Address Interface State Since(date time) Interval Timeout
    const auto f = Fields(line);
    if (f.size() < 7 || f[0] == "IP") continue;
    if (f[0].find_first_of(".:") == absl::string_view::npos) continue;  // not an address
    BfdSession& s = out.emplace_back();
    s.address = std::string(f[0]);
    s.interface = std::string(f[1]);
    s.state = std::string(f[2]);
    s.since = ParseSince(f[3], f[4], zone);
  }
  return out;
}

}  // namespace lb::control::bird
