// The watcher's connection settings (kubeconfig, in-cluster) and retry pacing.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <set>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "control/k8s/backoff.h"
#include "control/k8s/kube_client.h"
#include "control/k8s/kube_config.h"
#include "control/k8s/watcher.h"

namespace lb::control::k8s {
namespace {

using ::testing::HasSubstr;

class KubeconfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("lb-kubeconfig-" + std::to_string(::getpid()) + "-" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path) << text;
    return path;
  }
  std::string Message(const absl::StatusOr<KubeConfig>& c) { return std::string(c.status().message()); }

  std::filesystem::path dir_;
};

constexpr char kTwoContexts[] = R"(apiVersion: v1
kind: Config
clusters:
- name: prod
  cluster:
    server: https://10.0.0.1:6443
    certificate-authority-data: Q0EgUEVN
- name: lab
  cluster:
    server: https://lab:6443
    certificate-authority: certs/ca.pem
users:
- name: admin
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
- name: robot
  user:
    tokenFile: token
contexts:
- name: prod-admin
  context: {cluster: prod, user: admin}
- name: lab-robot
  context: {cluster: lab, user: robot}
current-context: prod-admin
)";

TEST_F(KubeconfigTest, CurrentContextWithInlineData) {
  auto c = LoadKubeconfig(Write("config", kTwoContexts));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->server, "https://10.0.0.1:6443");
  EXPECT_EQ(c->ca_pem, "CA PEM");
  EXPECT_EQ(c->client_cert_pem, "CERT");
  EXPECT_EQ(c->client_key_pem, "KEY");
  EXPECT_THAT(c->source, HasSubstr("context prod-admin"));
}

TEST_F(KubeconfigTest, NamedContextWithFilesRelativeToTheKubeconfig) {
  std::filesystem::create_directories(dir_ / "certs");
  Write("certs/ca.pem", "LAB CA");
  Write("token", "s3cret\n");
  auto c = LoadKubeconfig(Write("config", kTwoContexts), "lab-robot");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->server, "https://lab:6443");
  EXPECT_EQ(c->ca_pem, "LAB CA");
  EXPECT_EQ(*CurrentToken(*c), "s3cret") << "trailing newline stripped";
  Write("token", "rotated");
  EXPECT_EQ(*CurrentToken(*c), "rotated") << "read again for every request";
}

TEST_F(KubeconfigTest, Refusals) {
  EXPECT_THAT(Message(LoadKubeconfig(Write("config", kTwoContexts), "nope")),
              HasSubstr("no contexts entry named \"nope\""));
  EXPECT_THAT(Message(LoadKubeconfig((dir_ / "missing").string())), HasSubstr("missing"));
  EXPECT_THAT(Message(LoadKubeconfig(Write("c1", R"(clusters:
- name: x
  cluster: {server: "https://x", insecure-skip-tls-verify: true}
contexts: [{name: x, context: {cluster: x}}]
current-context: x
)"))),
              HasSubstr("always verifies the API server"));
  EXPECT_THAT(Message(LoadKubeconfig(Write("c2", R"(clusters: [{name: x, cluster: {server: "https://x"}}]
users: [{name: u, user: {exec: {command: aws}}}]
contexts: [{name: x, context: {cluster: x, user: u}}]
current-context: x
)"))),
              HasSubstr("exec and auth-provider credentials are not supported"));
  EXPECT_THAT(Message(LoadKubeconfig(Write("c3", R"(clusters: [{name: x, cluster: {server: "https://x"}}]
users: [{name: u, user: {client-certificate-data: Q0VSVA==}}]
contexts: [{name: x, context: {cluster: x, user: u}}]
current-context: x
)"))),
              HasSubstr("needs its key"));
  EXPECT_THAT(Message(LoadKubeconfig(Write("c4", "clusters: []\n"))), HasSubstr("no current-context"));
}

TEST_F(KubeconfigTest, InCluster) {
  Write("ca.crt", "CLUSTER CA");
  Write("token", "sa-token");
  setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
  setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  auto c = InClusterConfig(dir_.string());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->server, "https://[fd00::1]:443");
  EXPECT_EQ(c->ca_pem, "CLUSTER CA");
  EXPECT_EQ(*CurrentToken(*c), "sa-token");
  unsetenv("KUBERNETES_SERVICE_HOST");
  EXPECT_THAT(Message(InClusterConfig(dir_.string())), HasSubstr("not in a cluster"));
}

// The bearer token must not travel in clear: http:// only when explicitly allowed.
TEST(KubeConfigSchemeTest, PlainHttpIsRefusedUnlessAllowed) {
  KubeConfig c;
  c.server = "https://10.96.0.1:443";
  EXPECT_TRUE(CheckServerScheme(c, false).ok());
  c.server = "http://10.96.0.1:8080";
  EXPECT_EQ(CheckServerScheme(c, false).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(CheckServerScheme(c, false).message()), ::testing::HasSubstr("in clear"));
  EXPECT_TRUE(CheckServerScheme(c, true).ok());
  c.server = "ftp://x";
  EXPECT_FALSE(CheckServerScheme(c, true).ok());
}

TEST(KubeClientTest, QueryEscape) {
  EXPECT_EQ(QueryEscape("eyJ2Ijoi+/=&x"), "eyJ2Ijoi%2B%2F%3D%26x");
  EXPECT_EQ(QueryEscape("1234"), "1234");
}

TEST(KubeClientTest, DescribeFailureReadsTheStatusBody) {
  EXPECT_EQ(
      DescribeFailure(
          {403,
           R"({"kind":"Status","apiVersion":"v1","status":"Failure","message":"services is forbidden: User \"x\" cannot list","reason":"Forbidden","code":403})"}),
      "HTTP 403 Forbidden: services is forbidden: User \"x\" cannot list");
  EXPECT_EQ(DescribeFailure({502, "bad gateway"}), "HTTP 502: bad gateway");
}

TEST(BackoffTest, GrowsWithJitterUpToTheCapAndResets) {
  Backoff b(std::chrono::milliseconds(100), std::chrono::milliseconds(1000));
  const int64_t bases[] = {100, 200, 400, 800, 1000, 1000};
  for (int64_t base : bases) {
    const int64_t d = b.Next().count();
    EXPECT_GE(d, base / 2);
    EXPECT_LE(d, base);
  }
  b.Reset();
  EXPECT_LE(b.Next().count(), 100);
}

TEST(BackoffTest, JitterSpreadsRetries) {
  Backoff a(std::chrono::milliseconds(1000), std::chrono::milliseconds(1000));
  std::set<int64_t> seen;
  for (int i = 0; i < 20; ++i) seen.insert(a.Next().count());
  EXPECT_GT(seen.size(), 5u);
}

TEST(StopperTest, SleepEndsOnStop) {
  Stopper s;
  EXPECT_FALSE(s.SleepFor(std::chrono::milliseconds(1)));
  std::thread t([&] { s.Stop(); });
  EXPECT_TRUE(s.SleepFor(std::chrono::seconds(30)));
  t.join();
  EXPECT_TRUE(s.stopped());
}

}  // namespace
}  // namespace lb::control::k8s

namespace lb::control::k8s {
namespace {

std::string ReadSource(const std::string& path) {
  std::ifstream in(std::string(std::getenv("LB_SOURCE_ROOT")) + "/" + path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(WatcherDocsTest, EveryMetricAndFlagIsDocumented) {
  KubeClient kube(KubeConfig{.server = "https://127.0.0.1:1"});
  Watcher watcher(&kube, nullptr, WatcherOptions{});
  const std::string doc = ReadSource("docs/k8s.md");
  const std::string metrics = watcher.RenderMetrics();
  static const std::regex kType(R"(# TYPE (\w+) (\w+))");
  int seen = 0;
  for (std::sregex_iterator it(metrics.begin(), metrics.end(), kType), end; it != end; ++it, ++seen) {
    EXPECT_NE(doc.find("`" + (*it)[1].str()), std::string::npos) << (*it)[1] << " is not in docs/k8s.md";
  }
  EXPECT_GT(seen, 15);
  const std::string main_cc = ReadSource("control/k8s/main.cc");
  static const std::regex kDefine(R"(DEFINE_\w+\((\w+),)");
  seen = 0;
  for (std::sregex_iterator it(main_cc.begin(), main_cc.end(), kDefine), end; it != end; ++it, ++seen) {
    EXPECT_NE(doc.find("`--" + (*it)[1].str() + "`"), std::string::npos)
        << "--" << (*it)[1] << " is not in docs/k8s.md";
  }
  EXPECT_GT(seen, 8);
}

}  // namespace
}  // namespace lb::control::k8s
