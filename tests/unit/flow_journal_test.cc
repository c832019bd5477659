// The flow-sync thread's journal (control/lbd/flow_journal.h): what a (re)started peer is
// told when it asks for a dump.
#include "control/lbd/flow_journal.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

namespace lb::control {
namespace {

using dataplane::SyncedFlow;

SyncedFlow Flow(uint16_t client_port, uint8_t protocol, const char* backend = "10.92.1.2") {
  SyncedFlow f;
  f.key.src = *IpAddress::Parse("192.0.2.1");
  f.key.dst = *IpAddress::Parse("10.100.0.10");
  f.key.src_port_be = htons(client_port);
  f.key.dst_port_be = htons(protocol == IPPROTO_UDP ? 53 : 80);
  f.key.protocol = protocol;
  f.backend = *IpAddress::Parse(backend);
  f.state = 2;
  return f;
}

const FlowJournal::Options kOptions{.tcp_ttl_ms = 305'000, .udp_ttl_ms = 35'000, .capacity = 3};

TEST(FlowJournalTest, AFlowIsKnownByItsClientSideAndTheLatestAnnouncementStands) {
  FlowJournal journal(kOptions);
  EXPECT_TRUE(journal.Record(Flow(1, IPPROTO_TCP), 0));
  EXPECT_TRUE(journal.Record(Flow(1, IPPROTO_UDP), 0));                // another protocol: another flow
  EXPECT_TRUE(journal.Record(Flow(1, IPPROTO_TCP, "10.92.2.2"), 10));  // moved to another backend
  EXPECT_EQ(journal.size(), 2u);
  int tcp = 0;
  for (const SyncedFlow& f : journal.Live(20)) {
    if (f.key.protocol != IPPROTO_TCP) continue;
    ++tcp;
    EXPECT_EQ(f.backend, *IpAddress::Parse("10.92.2.2"));
  }
  EXPECT_EQ(tcp, 1);
}

TEST(FlowJournalTest, AnAnnouncementHoldsForItsProtocolsTimeAndARefreshExtendsIt) {
  FlowJournal journal(kOptions);
  journal.Record(Flow(1, IPPROTO_TCP), 0);
  journal.Record(Flow(2, IPPROTO_UDP), 0);
  journal.Record(Flow(3, IPPROTO_UDP), 0);
  journal.Record(Flow(3, IPPROTO_UDP), 30'000);  // announced again: still active
  EXPECT_EQ(journal.Live(34'999).size(), 3u);
  EXPECT_EQ(journal.Live(35'000).size(), 2u) << "UDP flow 2, idle, is over";
  journal.Expire(65'000);
  ASSERT_EQ(journal.size(), 1u) << "UDP flow 3 too, 35 s after its last announcement";
  EXPECT_EQ(journal.Live(65'000)[0].key.protocol, IPPROTO_TCP);
  journal.Expire(305'000);
  EXPECT_EQ(journal.size(), 0u);
}

TEST(FlowJournalTest, AFullJournalKeepsWhatItHasAndRefreshesIt) {
  FlowJournal journal(kOptions);
  for (uint16_t p = 1; p <= 3; ++p) EXPECT_TRUE(journal.Record(Flow(p, IPPROTO_TCP), 0));
  EXPECT_FALSE(journal.Record(Flow(4, IPPROTO_TCP), 0));
  EXPECT_TRUE(journal.Record(Flow(2, IPPROTO_TCP), 1000)) << "a flow it has is refreshed";
  journal.Expire(305'000);
  EXPECT_EQ(journal.size(), 1u);
  EXPECT_TRUE(journal.Record(Flow(4, IPPROTO_TCP), 305'000)) << "room again";
}

}  // namespace
}  // namespace lb::control
