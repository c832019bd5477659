#include "control/k8s/informer.h"
#include "control/k8s/objects.h"

#include <chrono>
#include <random>

#include <glog/logging.h>

#include "absl/strings/str_format.h"

namespace lb::control::k8s {

using nlohmann::json;

std::string KeyOf(const json& object) {
  const json& meta = object.is_object() && object.contains("metadata") ? object["metadata"] : json();
  return absl::StrFormat("%s/%s", StringField(meta, "namespace"), StringField(meta, "name"));
}

Informer::Informer(KubeClient* client, std::string path, std::function<void()> on_change, InformerOptions options)
    : client_(client), path_(std::move(path)), on_change_(std::move(on_change)), options_(options) {}

std::vector<Object> Informer::Objects() const {
  absl::MutexLock lock(&mu_);
  std::vector<Object> out;
  out.reserve(store_.size());
  for (const auto& [key, object] : store_) out.push_back(object);
  return out;
}

InformerStats Informer::stats() const {
  absl::MutexLock lock(&mu_);
  InformerStats s = stats_;
  s.objects = store_.size();
  return s;
}

void Informer::Run(const Stopper& stop) {
  Backoff backoff(options_.backoff_initial, options_.backoff_max);
  bool need_list = true;
  auto count_error = [&] {
    absl::MutexLock lock(&mu_);
    ++stats_.errors;
  };
  while (!stop.stopped()) {
    if (need_list) {
      if (const absl::Status s = List(stop); !s.ok()) {
        if (stop.stopped()) return;
        count_error();
        const auto delay = backoff.Next();
        LOG(WARNING) << "list " << path_ << ": " << s.message() << "; again in " << delay.count() << " ms";
        if (stop.SleepFor(delay)) return;
        continue;
      }
      need_list = false;
    }
    switch (Watch(stop)) {
      case WatchEnd::kStopped:
        return;
      case WatchEnd::kExpired:
        backoff.Reset();
        break;
      case WatchEnd::kGone: {
        need_list = true;
        absl::MutexLock lock(&mu_);
        ++stats_.relists_gone;
        break;
      }
      case WatchEnd::kError: {
        count_error();
        const auto delay = backoff.Next();
        LOG(WARNING) << "watch " << path_ << " from version " << version_ << " failed; again in " << delay.count()
                     << " ms";
        if (stop.SleepFor(delay)) return;
        break;
      }
    }
  }
}

absl::Status Informer::List(const Stopper& stop) {
  std::map<std::string, Object> fresh;
  std::string next, version;
  do {
    if (stop.stopped()) return absl::CancelledError("stopped");
    std::string query = absl::StrFormat("%s%climit=%d", path_, QuerySeparator(), options_.page_size);
    if (!next.empty()) query += "&continue=" + QueryEscape(next);
    auto response = client_->Request("GET", query);
    if (!response.ok()) return response.status();
    if (response->status != 200) return absl::UnavailableError(DescribeFailure(*response));
    json list = json::parse(response->body, nullptr, false);
    if (!list.is_object() || !list["items"].is_array()) {
      return absl::InvalidArgumentError("the list is not a Kubernetes list object");
    }
    const json& meta = list["metadata"];
    version = StringField(meta, "resourceVersion");
    next = StringField(meta, "continue");
    for (json& item : list["items"]) {
      if (!item.contains("metadata")) continue;
      std::string key = KeyOf(item);
      fresh[std::move(key)] = std::make_shared<const json>(std::move(item));
    }
  } while (!next.empty());
  if (version.empty()) return absl::InvalidArgumentError("the list has no resourceVersion");
  {
    absl::MutexLock lock(&mu_);
    store_.swap(fresh);
    ++stats_.lists;
    stats_.resource_version = version;
  }
  version_ = version;
  LOG(INFO) << "listed " << path_ << " at version " << version;
  synced_.store(true, std::memory_order_release);
  on_change_();
  return absl::OkStatus();
}

Informer::WatchEnd Informer::Watch(const Stopper& stop) {
  // Spread the watches' ends so that a fleet of watchers does not reconnect in step.
  static thread_local std::minstd_rand rng{std::random_device{}()};
  const int timeout =
      options_.watch_timeout_seconds + std::uniform_int_distribution<int>(0, options_.watch_timeout_seconds / 5)(rng);
  const std::string query = absl::StrFormat("%s%cwatch=1&allowWatchBookmarks=true&resourceVersion=%s&timeoutSeconds=%d",
                                            path_, QuerySeparator(), QueryEscape(version_), timeout);
  {
    absl::MutexLock lock(&mu_);
    ++stats_.watches;
  }
  bool gone = false, broken = false;
  uint64_t lines = 0;
  const auto started = std::chrono::steady_clock::now();
  auto response = client_->Stream(
      query,
      [&](std::string_view line) {
        if (gone || broken || line.empty()) return;
        ++lines;
        auto applied = OnEvent(line);
        if (!applied.ok()) {
          LOG(WARNING) << "watch " << path_ << ": " << applied.status().message();
          broken = true;
        } else if (!*applied) {
          gone = true;
        }
      },
      [&stop] { return stop.stopped(); }, timeout + 30);
  if (!response.ok()) {
    if (absl::IsCancelled(response.status())) return WatchEnd::kStopped;
    LOG(WARNING) << "watch " << path_ << ": " << response.status().message();
    return WatchEnd::kError;
  }
  if (response->status == 410 || gone) {
    LOG(INFO) << "watch " << path_ << ": version " << version_ << " is gone (410): listing again";
    return WatchEnd::kGone;
  }
  if (response->status != 200) {
    LOG(WARNING) << "watch " << path_ << ": " << DescribeFailure(*response);
    return WatchEnd::kError;
  }
  if (broken) return WatchEnd::kError;
  if (lines == 0 && std::chrono::steady_clock::now() - started < std::chrono::seconds(1)) {
    LOG(WARNING) << "watch " << path_ << " ended at once";
    return WatchEnd::kError;
  }
  return WatchEnd::kExpired;
}

absl::StatusOr<bool> Informer::OnEvent(std::string_view line) {
  json event = json::parse(line, nullptr, false);
  if (!event.is_object() || !event["type"].is_string() || !event["object"].is_object()) {
    return absl::InvalidArgumentError(absl::StrFormat("not a watch event: %.120s", line));
  }
  const std::string type = event["type"];
  json& object = event["object"];
  if (type == "ERROR") {
    if (object.contains("code") && object["code"].is_number_integer() && object["code"].get<int64_t>() == 410) {
      return false;
    }
    return absl::UnavailableError(absl::StrFormat("watch error: %s", StringField(object, "message")));
  }
  if (!object["metadata"].is_object()) {
    return absl::InvalidArgumentError(absl::StrFormat("a %s event without metadata", type));
  }
  std::string version = StringField(object["metadata"], "resourceVersion");
  if (type == "BOOKMARK") {
    absl::MutexLock lock(&mu_);
    ++stats_.bookmarks;
    stats_.resource_version = version;
    version_ = std::move(version);
    return true;
  }
  if (type != "ADDED" && type != "MODIFIED" && type != "DELETED") {
    return absl::InvalidArgumentError(absl::StrFormat("unknown watch event type \"%s\"", type));
  }
  {
    absl::MutexLock lock(&mu_);
    const std::string key = KeyOf(object);
    if (type == "DELETED") {
      store_.erase(key);
    } else {
      store_[key] = std::make_shared<const json>(std::move(object));
    }
    ++stats_.events;
    stats_.resource_version = version;
  }
  version_ = std::move(version);
  on_change_();
  return true;
}

}  // namespace lb::control::k8s
