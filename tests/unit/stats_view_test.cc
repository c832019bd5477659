// lbctl's views of GetStats: the totals of `lbctl stats` and the rates of `--watch`.
#include "tools/stats_view.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace lb::tools {
namespace {

using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::Not;

// A table row: the cells in order, whatever the padding between them.
::testing::Matcher<const std::string&> Row(std::vector<std::string> cells) {
  std::string re;
  for (std::string c : cells) {
    for (size_t i = 0; i < c.size(); ++i) {
      if (c[i] == '.' || c[i] == '[' || c[i] == ']') c.insert(i++, "\\");
    }
    re += (re.empty() ? "" : " +") + c;
  }
  return ContainsRegex(re);
}
lb::v1::ServiceStats* AddService(lb::v1::Stats& s, const char* vip, uint32_t port, uint64_t packets, uint64_t bytes,
                                 uint64_t new_flows = 0, uint64_t drops = 0) {
  lb::v1::ServiceStats* svc = s.add_services();
  svc->mutable_key()->set_vip(vip);
  svc->mutable_key()->set_port(port);
  svc->mutable_key()->set_protocol(lb::v1::UDP);
  svc->set_packets(packets);
  svc->set_bytes(bytes);
  svc->set_new_flows(new_flows);
  svc->set_drops(drops);
  svc->set_backends_total(2);
  return svc;
}

void AddBackend(lb::v1::ServiceStats* svc, const char* address, uint64_t packets, uint64_t bytes) {
  lb::v1::BackendStats* b = svc->add_backends();
  b->set_address(address);
  b->set_packets(packets);
  b->set_bytes(bytes);
  b->set_maglev_entries(510);
}

void SetCounter(google::protobuf::RepeatedPtrField<lb::v1::Counter>* counters, const char* name, uint64_t v) {
  lb::v1::Counter* c = counters->Add();
  c->set_name(name);
  c->set_value(v);
}

TEST(StatsViewTest, Human) {
  EXPECT_EQ(Human(0), "0");
  EXPECT_EQ(Human(999), "999");
  EXPECT_EQ(Human(2.5), "2.5");
  EXPECT_EQ(Human(1234), "1.23k");
  EXPECT_EQ(Human(12'345'678), "12.35M");
  EXPECT_EQ(Human(3e9), "3.00G");
}

TEST(StatsViewTest, WatchShowsRatesPerSecondTheBusiestFirst) {
  lb::v1::Stats before, after;
  AddService(before, "10.1.0.10", 53, 1000, 100'000, 10, 0);
  AddService(before, "10.1.0.11", 53, 0, 0);
  AddService(before, "10.1.0.12", 53, 500, 50'000, 0, 7);
  lb::v1::ServiceStats* hot = AddService(after, "10.1.0.10", 53, 5000, 500'000, 50, 0);
  AddService(after, "10.1.0.11", 53, 20'000, 2'000'000, 400, 0);  // the busiest now
  AddService(after, "10.1.0.12", 53, 100, 10'000, 0, 3);          // went back: re-created
  AddBackend(hot, "192.168.1.1", 3000, 300'000);
  SetCounter(before.mutable_drops(), "no_backend", 10);
  SetCounter(after.mutable_drops(), "no_backend", 18);
  SetCounter(before.mutable_drops(), "tx_full", 5);
  SetCounter(after.mutable_drops(), "tx_full", 5);
  SetCounter(before.mutable_events(), "rx_packets", 0);
  SetCounter(after.mutable_events(), "rx_packets", 26'000);

  const std::string frame = RenderWatch(before, after, {.seconds = 2, .rows = 2, .title = "TITLE"});
  EXPECT_EQ(frame.rfind("TITLE\n", 0), 0u);
  EXPECT_THAT(frame, HasSubstr("received 13.00k"));
  // 10.1.0.11: 20,000 packets and 2 MB in 2 s; 10.1.0.10: 4,000 and 400 kB.
  const size_t busiest = frame.find("10.1.0.11:53/udp");
  const size_t second = frame.find("10.1.0.10:53/udp");
  ASSERT_NE(busiest, std::string::npos);
  ASSERT_NE(second, std::string::npos);
  EXPECT_LT(busiest, second);
  EXPECT_THAT(frame, Row({"10.1.0.11:53/udp", "10.00k", "8.00M", "200", "0", "2"}));
  EXPECT_THAT(frame, Row({"10.1.0.10:53/udp", "2.00k", "1.60M", "20", "0", "2"}));
  EXPECT_THAT(frame, Not(HasSubstr("10.1.0.12:53/udp"))) << "2 rows asked for";
  EXPECT_THAT(frame, HasSubstr("... and 1 more services"));
  EXPECT_THAT(frame, HasSubstr("192.168.1.1"));
  EXPECT_THAT(frame, Row({"192.168.1.1", "10.1.0.10:53/udp", "active", "1.50k", "1.20M"}))
      << "the backend: new in the answer, from zero";
  EXPECT_THAT(frame, Row({"no_backend", "4/s"}));
  EXPECT_THAT(frame, Not(HasSubstr("tx_full"))) << "only reasons that moved";
}

TEST(StatsViewTest, ACounterThatWentBackCountsFromZero) {
  lb::v1::Stats before, after;
  AddService(before, "10.1.0.12", 53, 500, 50'000);
  AddService(after, "10.1.0.12", 53, 100, 10'000);
  const std::string frame = RenderWatch(before, after, {.seconds = 1, .rows = 5});
  EXPECT_THAT(frame, Row({"10.1.0.12:53/udp", "100", "80.00k"}));
}

TEST(StatsViewTest, FlowSyncPeers) {
  lb::v1::Stats after;
  lb::v1::FlowSyncPeerStats* p = after.mutable_flow_sync()->add_peer_stats();
  p->set_address("10.0.0.2");
  p->set_datagrams(12);
  p->set_flows_learned(340);
  p->set_last_heard_unix_ms(1'000'000);
  p->set_delay_us(2500);
  after.mutable_flow_sync()->add_peer_stats()->set_address("10.0.0.3");
  const std::string frame = RenderWatch({}, after, {.seconds = 1, .now_unix_ms = 1'003'000});
  EXPECT_THAT(frame, Row({"peer", "10.0.0.2", "heard 3 s ago, delay 2.5 ms; 12 datagrams, 340 flows learned"}));
  EXPECT_THAT(frame, Row({"peer", "10.0.0.3", "never heard; 0 datagrams"}));
}

TEST(StatsViewTest, TotalsListTheBusiestServicesAndBackends) {
  lb::v1::Stats s;
  AddService(s, "10.1.0.10", 53, 10, 1000);
  lb::v1::ServiceStats* big = AddService(s, "10.1.0.11", 53, 2'000'000, 150'000'000, 1000, 2);
  AddBackend(big, "192.168.1.2", 1'500'000, 100'000'000);
  AddBackend(big, "192.168.1.1", 500'000, 50'000'000);
  const std::string text = RenderTraffic(s, 10);
  EXPECT_LT(text.find("10.1.0.11:53/udp"), text.find("10.1.0.10:53/udp"));
  EXPECT_THAT(text, Row({"10.1.0.11:53/udp", "2.00M", "150.00M", "1.00k", "2", "2"}));
  EXPECT_LT(text.find("192.168.1.2"), text.find("192.168.1.1"));
  EXPECT_THAT(text, Row({"192.168.1.2", "active", "1.50M", "100.00M", "510"}));
  EXPECT_THAT(RenderTraffic(s, 1), HasSubstr("... and 1 more services"));
}

}  // namespace
}  // namespace lb::tools
