// rte_rcu_qsbr needs no EAL: the grace-period logic is tested here with worker "threads"
// whose quiescent states the test reports by hand.
#include "dataplane/snapshot_store.h"

#include <gtest/gtest.h>

namespace lb::dataplane {
namespace {

std::unique_ptr<const Snapshot> Make(SnapshotBuilder& b) {
  DataplaneConfig c;
  auto s = b.Build(c);
  EXPECT_TRUE(s.ok());
  return *std::move(s);
}

TEST(SnapshotStoreTest, RetiredSnapshotsWaitForEveryWorker) {
  auto store = SnapshotStore::Create(2);
  ASSERT_TRUE(store.ok()) << store.status();
  SnapshotStore& s = **store;
  ASSERT_TRUE(s.RegisterWorker(0).ok());
  ASSERT_TRUE(s.RegisterWorker(1).ok());
  SnapshotBuilder builder;

  s.Publish(Make(builder));
  const Snapshot* first = s.Acquire();
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(s.retired(), 0u);
  s.Publish(Make(builder));
  EXPECT_NE(s.Acquire(), first);
  EXPECT_EQ(s.retired(), 1u);

  EXPECT_EQ(s.Reclaim(), 1u) << "no worker has passed a quiescent state yet";
  s.Quiescent(0);
  EXPECT_EQ(s.Reclaim(), 1u) << "worker 1 may still read the old snapshot";
  s.Quiescent(1);
  EXPECT_EQ(s.Reclaim(), 0u);
}

TEST(SnapshotStoreTest, OfflineWorkersDoNotHoldUpReclamation) {
  auto store = SnapshotStore::Create(2);
  ASSERT_TRUE(store.ok());
  SnapshotStore& s = **store;
  ASSERT_TRUE(s.RegisterWorker(0).ok());
  ASSERT_TRUE(s.RegisterWorker(1).ok());
  SnapshotBuilder builder;
  s.Publish(Make(builder));
  s.Offline(1);  // e.g. sleeping while idle
  s.Publish(Make(builder));
  s.Publish(Make(builder));
  EXPECT_EQ(s.retired(), 2u);
  s.Quiescent(0);
  EXPECT_EQ(s.Reclaim(), 0u);
  s.Online(1);
  s.Publish(Make(builder));
  EXPECT_EQ(s.Reclaim(), 1u);
}

TEST(SnapshotStoreTest, RejectsAWorkerIdOutOfRange) {
  auto store = SnapshotStore::Create(1);
  ASSERT_TRUE(store.ok());
  EXPECT_FALSE((*store)->RegisterWorker(5).ok());
}

}  // namespace
}  // namespace lb::dataplane
