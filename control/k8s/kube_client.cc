#include "control/k8s/kube_client.h"
#include "control/k8s/objects.h"

#include <curl/curl.h>

#include <cctype>
#include <memory>
#include <mutex>

#include <nlohmann/json.hpp>

#include "absl/strings/str_format.h"

namespace lb::control::k8s {
namespace {

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using CurlHandle = std::unique_ptr<CURL, CurlDeleter>;
using Headers = std::unique_ptr<curl_slist, SlistDeleter>;

// What the write callback of a request fills.
struct Sink {
  CURL* curl = nullptr;
  std::string body;
  absl::FunctionRef<void(std::string_view)>* on_line = nullptr;  // streaming 2xx bodies only
  bool streaming = false;
  const std::function<bool()>* should_stop = nullptr;
  bool stopped = false;
};

size_t OnData(char* data, size_t size, size_t count, void* user) {
  auto* sink = static_cast<Sink*>(user);
  sink->body.append(data, size * count);
  if (sink->on_line == nullptr) return size * count;
  if (!sink->streaming) {
    long status = 0;
    curl_easy_getinfo(sink->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200 || status >= 300) return size * count;  // an error body: keep it whole
    sink->streaming = true;
  }
  size_t start = 0;
  for (size_t nl; (nl = sink->body.find('\n', start)) != std::string::npos; start = nl + 1) {
    (*sink->on_line)(std::string_view(sink->body).substr(start, nl - start));
  }
  sink->body.erase(0, start);
  return size * count;
}

int OnProgress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* sink = static_cast<Sink*>(user);
  if (sink->should_stop != nullptr && (*sink->should_stop)()) {
    sink->stopped = true;
    return 1;  // aborts the transfer
  }
  return 0;
}

void SetBlob(CURL* c, CURLoption option, const std::string& pem) {
  curl_blob blob{const_cast<char*>(pem.data()), pem.size(), CURL_BLOB_COPY};
  curl_easy_setopt(c, option, &blob);
}

}  // namespace

KubeClient::KubeClient(KubeConfig config) : config_(std::move(config)) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

namespace {

absl::StatusOr<HttpResponse> Perform(const KubeConfig& config, std::string_view method, const std::string& path,
                                     const std::string& body, absl::FunctionRef<void(std::string_view)>* on_line,
                                     const std::function<bool()>* should_stop, long timeout_seconds) {
  CurlHandle handle(curl_easy_init());
  if (!handle) return absl::InternalError("curl_easy_init failed");
  CURL* c = handle.get();
  const std::string url = config.server + path;
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 5L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, timeout_seconds);
  curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(c, CURLOPT_TCP_KEEPIDLE, 15L);
  curl_easy_setopt(c, CURLOPT_TCP_KEEPINTVL, 5L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
  if (!config.ca_pem.empty()) SetBlob(c, CURLOPT_CAINFO_BLOB, config.ca_pem);
  if (!config.client_cert_pem.empty()) {
    SetBlob(c, CURLOPT_SSLCERT_BLOB, config.client_cert_pem);
    SetBlob(c, CURLOPT_SSLKEY_BLOB, config.client_key_pem);
    curl_easy_setopt(c, CURLOPT_SSLCERTTYPE, "PEM");
  }
  Headers headers(curl_slist_append(nullptr, "Accept: application/json"));
  auto token = CurrentToken(config);
  if (!token.ok()) return token.status();
  if (!token->empty()) {
    headers.reset(curl_slist_append(headers.release(), ("Authorization: Bearer " + *token).c_str()));
  }
  const std::string m(method);
  if (m != "GET") {
    headers.reset(curl_slist_append(headers.release(), "Content-Type: application/json"));
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, m.c_str());
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, long(body.size()));
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(c, CURLOPT_USERAGENT, "lb-k8s-watcher/0.1");
  Sink sink{.curl = c, .on_line = on_line, .should_stop = should_stop};
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &OnData);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
  if (should_stop != nullptr) {
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, &OnProgress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &sink);
  }
  const CURLcode rc = curl_easy_perform(c);
  if (sink.stopped) return absl::CancelledError("stopped");
  HttpResponse response;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &response.status);
  if (rc != CURLE_OK) {
    // A watch that ran into its own time limit ended like a server-side timeout.
    if (rc == CURLE_OPERATION_TIMEDOUT && on_line != nullptr && sink.streaming) return response;
    return absl::UnavailableError(absl::StrFormat("%s %s: %s", m, url, curl_easy_strerror(rc)));
  }
  if (!sink.streaming) response.body = std::move(sink.body);
  return response;
}

}  // namespace

absl::StatusOr<HttpResponse> KubeClient::Request(std::string_view method, const std::string& path,
                                                 const std::string& body) {
  return Perform(config_, method, path, body, nullptr, nullptr, 30);
}

absl::StatusOr<HttpResponse> KubeClient::Stream(const std::string& path,
                                                absl::FunctionRef<void(std::string_view)> on_line,
                                                const std::function<bool()>& should_stop, int max_seconds) {
  return Perform(config_, "GET", path, "", &on_line, &should_stop, max_seconds);
}

}  // namespace lb::control::k8s

namespace lb::control::k8s {

std::string QueryEscape(std::string_view value) {
  std::string out;
  for (const unsigned char ch : value) {
    if (std::isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~') {
      out.push_back(char(ch));
    } else {
      out += absl::StrFormat("%%%02X", ch);
    }
  }
  return out;
}

std::string DescribeFailure(const HttpResponse& response) {
  const auto status = nlohmann::json::parse(response.body, nullptr, false);
  if (status.is_object() && StringField(status, "kind") == "Status") {
    return absl::StrFormat("HTTP %d %s: %s", response.status, StringField(status, "reason"),
                           StringField(status, "message"));
  }
  return absl::StrFormat("HTTP %d: %s", response.status, response.body.substr(0, 200));
}

}  // namespace lb::control::k8s
