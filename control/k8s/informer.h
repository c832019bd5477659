// Informer: a local copy of one Kubernetes resource kind, kept current the way client-go's
// reflector does it. List (paginated), then watch from the list's resourceVersion with
// bookmarks; on a timeout or a dropped connection watch again from the last version seen
// (an event's or a bookmark's); on 410 Gone (history compacted) list again; on errors
// back off exponentially with jitter. A watch that ends at once without delivering
// anything counts as an error, so nothing loops hot.
//
// Thread model: Run() on its own thread; Objects(), synced() and stats() from any thread.
// `on_change` is called on the informer's thread after every change to the store.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/synchronization/mutex.h"
#include "control/k8s/backoff.h"
#include "control/k8s/kube_client.h"

namespace lb::control::k8s {

using Object = std::shared_ptr<const nlohmann::json>;

struct InformerStats {
  uint64_t lists = 0;
  uint64_t watches = 0;
  uint64_t relists_gone = 0;  // lists forced by 410 Gone
  uint64_t errors = 0;
  uint64_t events = 0;
  uint64_t bookmarks = 0;
  uint64_t objects = 0;
  std::string resource_version;
};

struct InformerOptions {
  std::chrono::milliseconds backoff_initial{250};
  std::chrono::milliseconds backoff_max{30000};
  int watch_timeout_seconds = 300;  // asked of the server; it ends the watch then
  int page_size = 500;
};

class Informer {
 public:
  // `path` is the collection ("/api/v1/services"), optionally with a selector
  // ("/api/v1/pods?fieldSelector=spec.nodeName%3Dn1", the value escaped).
  Informer(KubeClient* client, std::string path, std::function<void()> on_change, InformerOptions options = {});

  void Run(const Stopper& stop);

  // The objects (namespace/name order).
  std::vector<Object> Objects() const ABSL_LOCKS_EXCLUDED(mu_);
  // Listed at least once: the store reflects the cluster.
  bool synced() const { return synced_.load(std::memory_order_acquire); }  // pairs with the store's update
  InformerStats stats() const ABSL_LOCKS_EXCLUDED(mu_);
  const std::string& path() const { return path_; }

 private:
  enum class WatchEnd { kExpired, kGone, kError, kStopped };

  // Lists everything; on success the store is replaced and the version is the list's.
  absl::Status List(const Stopper& stop);
  WatchEnd Watch(const Stopper& stop);
  // Applies one watch line; false when it says the version is gone (410).
  absl::StatusOr<bool> OnEvent(std::string_view line);
  // '&' when the path already carries a query, else '?'.
  char QuerySeparator() const { return path_.find('?') == std::string::npos ? '?' : '&'; }

  KubeClient* const client_;
  const std::string path_;
  const std::function<void()> on_change_;
  const InformerOptions options_;
  std::atomic<bool> synced_{false};

  mutable absl::Mutex mu_;
  std::map<std::string, Object> store_ ABSL_GUARDED_BY(mu_);  // by "namespace/name"
  InformerStats stats_ ABSL_GUARDED_BY(mu_);
  std::string version_;  // the informer thread's own: last resourceVersion seen
};

// "namespace/name" of an object.
std::string KeyOf(const nlohmann::json& object);

}  // namespace lb::control::k8s
