// The traffic counters' ids (TrafficTable): handed out, kept from record to record,
// released with the last record, zeroed before reuse; and the cells' layout.
#include "dataplane/traffic.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include "dataplane/snapshot.h"

namespace lb::dataplane {
namespace {

IpAddress Addr(const char* s) { return *IpAddress::Parse(s); }

TEST(TrafficTableTest, IdsAreHandedOutLowestFirstAndReusedOnlyWhenReleased) {
  auto table = TrafficTable::Create(2, 3, 3);
  TrafficIdHandle a = table->Allocate(TrafficId::Kind::kService);
  TrafficIdHandle b = table->Allocate(TrafficId::Kind::kService);
  TrafficIdHandle c = table->Allocate(TrafficId::Kind::kService);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->value(), 1u) << "0 is the sink";
  EXPECT_EQ(b->value(), 2u);
  EXPECT_EQ(c->value(), 3u);
  EXPECT_EQ(table->Allocate(TrafficId::Kind::kService), nullptr) << "all 3 taken: the sink";
  EXPECT_EQ(table->exhausted(), 1u);
  EXPECT_NE(table->Allocate(TrafficId::Kind::kBackend), nullptr) << "backends have ids of their own";

  const uint32_t released = b->value();
  b.reset();
  TrafficIdHandle d = table->Allocate(TrafficId::Kind::kService);
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->value(), released);
}

TEST(TrafficTableTest, WorkersCountApartAndReadsSumThem) {
  auto table = TrafficTable::Create(2, 4, 8);
  TrafficIdHandle svc = table->Allocate(TrafficId::Kind::kService);
  TrafficIdHandle be = table->Allocate(TrafficId::Kind::kBackend);
  TrafficCells w0 = table->cells(0), w1 = table->cells(1);
  w0.Forwarded(svc->value(), be->value(), 100);
  w0.Forwarded(svc->value(), be->value(), 60);
  w1.Forwarded(svc->value(), be->value(), 1500);
  w1.NewFlow(svc->value());
  w1.Dropped(svc->value());
  w1.Dropped(0);  // the sink: never reported

  const ServiceTraffic s = table->Service(svc->value());
  EXPECT_EQ(s.packets, 3u);
  EXPECT_EQ(s.bytes, 1660u);
  EXPECT_EQ(s.new_flows, 1u);
  EXPECT_EQ(s.drops, 1u);
  EXPECT_EQ(table->Backend(be->value()).packets, 3u);
  EXPECT_EQ(table->Backend(be->value()).bytes, 1660u);
  EXPECT_EQ(w0.Service(svc->value()).packets, 2u);
  EXPECT_EQ(w1.Service(svc->value()).packets, 1u);
}

TEST(TrafficTableTest, EachWorkerHasCellsOfItsOwn) {
  auto table = TrafficTable::Create(3, 5, 5);
  for (uint32_t w = 0; w < 3; ++w) {
    TrafficCells c = table->cells(w);
    // Writing each id's cells must not move another worker's.
    for (uint32_t id = 0; id <= 5; ++id) c.Forwarded(id, id, w + 1);
  }
  for (uint32_t w = 0; w < 3; ++w) {
    for (uint32_t id = 0; id <= 5; ++id) {
      EXPECT_EQ(table->cells(w).Service(id).bytes, w + 1);
      EXPECT_EQ(table->cells(w).Backend(id).packets, 1u);
    }
  }
}

TEST(TrafficTableTest, AReleasedIdStartsFromZero) {
  auto table = TrafficTable::Create(2, 1, 1);
  TrafficIdHandle a = table->Allocate(TrafficId::Kind::kBackend);
  const uint32_t id = a->value();
  table->cells(0).Forwarded(0, id, 40);
  table->cells(1).Forwarded(0, id, 40);
  EXPECT_EQ(table->Backend(id).packets, 2u);
  a.reset();
  TrafficIdHandle b = table->Allocate(TrafficId::Kind::kBackend);
  ASSERT_NE(b, nullptr);
  ASSERT_EQ(b->value(), id);
  EXPECT_EQ(table->Backend(id).packets, 0u);
  EXPECT_EQ(table->Backend(id).bytes, 0u);
}

TEST(TrafficTableTest, AnIdOutlivesTheTableHandleThatMadeIt) {
  TrafficIdHandle id;
  {
    auto table = TrafficTable::Create(1, 1, 1);
    id = table->Allocate(TrafficId::Kind::kService);
  }
  ASSERT_NE(id, nullptr);
  EXPECT_EQ(id->value(), 1u);
  id.reset();  // releases into the table it keeps alive
}

// The snapshot builder: a service and a kept backend keep their ids over rebuilds; a
// removed backend's id is freed once no record names it.
TEST(TrafficTableTest, RecordsCarryTheirIdsFromVersionToVersion) {
  auto table = TrafficTable::Create(1, 4, 4);
  SnapshotBuilder builder({}, table);
  DataplaneConfig c;
  c.encap.source_v4 = *IpPrefix::Parse("10.255.0.0/24");
  ServiceConfig dns{.vip = Addr("10.1.0.10"), .protocol = IPPROTO_UDP, .port = 53, .table_size = 307};
  dns.backends = {{Addr("192.168.10.1")}, {Addr("192.168.10.2")}};
  c.services = {dns};
  auto first = builder.Build(c);
  ASSERT_TRUE(first.ok()) << first.status();
  const ServiceRecord& r1 = (*first)->service(0);
  const uint32_t svc = r1.traffic_id, b1 = r1.backends[0].traffic_id, b2 = r1.backends[1].traffic_id;
  EXPECT_NE(svc, 0u);
  EXPECT_NE(b1, 0u);
  EXPECT_NE(b2, 0u);
  EXPECT_NE(b1, b2);

  c.services[0].backends = {{Addr("192.168.10.1")}, {Addr("192.168.10.3")}};
  auto second = builder.Build(c);
  ASSERT_TRUE(second.ok()) << second.status();
  const ServiceRecord& r2 = (*second)->service(0);
  EXPECT_EQ(r2.traffic_id, svc);
  EXPECT_EQ(r2.backends[0].traffic_id, b1) << "kept backend, kept id";
  EXPECT_NE(r2.backends[1].traffic_id, b2) << "192.168.10.2's record (in `first`) still holds its id";

  first->reset();  // the last record naming 192.168.10.2
  c.services[0].backends.push_back({Addr("192.168.10.4")});
  auto third = builder.Build(c);
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ((*third)->service(0).backends[2].traffic_id, b2) << "freed, then reused";
}

}  // namespace
}  // namespace lb::dataplane
