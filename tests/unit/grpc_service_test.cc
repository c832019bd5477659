// The gRPC layer over a real server and channel (in process).
#include "control/grpc_service.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

namespace lb::control {
namespace {

using ::testing::HasSubstr;

class GrpcServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = dataplane::SnapshotStore::Create(1);
    ASSERT_TRUE(store.ok());
    store_ = *std::move(store);
    NodeSettings settings;
    settings.encap.source_v4 = *IpPrefix::Parse("10.255.0.0/24");
    core_ = std::make_unique<ControlCore>(settings, store_.get(), nullptr);
    ASSERT_TRUE(core_->Start().ok());
    service_ = std::make_unique<LoadBalancerService>(core_.get());
    grpc::ServerBuilder builder;
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    stub_ = lb::v1::LoadBalancer::NewStub(server_->InProcessChannel(grpc::ChannelArguments()));
  }
  void TearDown() override { server_->Shutdown(); }

  lb::v1::Service Dns() {
    lb::v1::Service s;
    s.mutable_key()->set_vip("10.1.0.10");
    s.mutable_key()->set_protocol(lb::v1::UDP);
    s.mutable_key()->set_port(53);
    s.add_backends()->set_address("192.168.1.1");
    s.add_backends()->set_address("192.168.1.2");
    return s;
  }

  std::unique_ptr<dataplane::SnapshotStore> store_;
  std::unique_ptr<ControlCore> core_;
  std::unique_ptr<LoadBalancerService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<lb::v1::LoadBalancer::Stub> stub_;
};

TEST_F(GrpcServiceTest, CreateListGetWithDefaults) {
  grpc::ClientContext ctx;
  lb::v1::CreateServiceRequest req;
  *req.mutable_service() = Dns();
  lb::v1::Service created;
  ASSERT_TRUE(stub_->CreateService(&ctx, req, &created).ok());
  EXPECT_EQ(created.id(), 1u);
  EXPECT_EQ(created.mode(), lb::v1::DSR_IPIP) << "unspecified mode means dsr-ipip";
  EXPECT_EQ(created.table_size(), 0u) << "0: sized by the backend count";
  EXPECT_EQ(created.effective_table_size(), 1021u) << "two backends: the smallest size";
  EXPECT_EQ(created.backends(0).weight(), 1u);
  EXPECT_EQ(created.backends(0).state(), lb::v1::ACTIVE);

  grpc::ClientContext ctx2;
  lb::v1::ListServicesResponse list;
  ASSERT_TRUE(stub_->ListServices(&ctx2, {}, &list).ok());
  ASSERT_EQ(list.services_size(), 1);
  EXPECT_EQ(list.services(0).key().vip(), "10.1.0.10");
}

TEST_F(GrpcServiceTest, ErrorsCarryCanonicalCodesAndFields) {
  lb::v1::CreateServiceRequest req;
  *req.mutable_service() = Dns();
  req.mutable_service()->mutable_backends(1)->set_address("not-an-ip");
  grpc::ClientContext ctx;
  lb::v1::Service out;
  grpc::Status s = stub_->CreateService(&ctx, req, &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("service.backends[1].address: \"not-an-ip\""));

  req.mutable_service()->mutable_key()->set_protocol(lb::v1::PROTOCOL_UNSPECIFIED);
  grpc::ClientContext ctx2;
  s = stub_->CreateService(&ctx2, req, &out);
  EXPECT_THAT(s.error_message(), HasSubstr("service.key.protocol: must be TCP or UDP"));

  grpc::ClientContext ctx3;
  lb::v1::GetServiceRequest get;
  *get.mutable_key() = Dns().key();
  s = stub_->GetService(&ctx3, get, &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);

  grpc::ClientContext ctx4;
  lb::v1::UpdateBackendRequest upd;
  *upd.mutable_key() = Dns().key();
  upd.set_address("192.168.1.1");
  s = stub_->UpdateBackend(&ctx4, upd, &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << "neither weight nor state";
  EXPECT_TRUE(core_->ListServices().empty());
}

TEST_F(GrpcServiceTest, SourceRangesAreCheckedAndKept) {
  lb::v1::CreateServiceRequest req;
  *req.mutable_service() = Dns();
  req.mutable_service()->add_source_ranges("192.0.2.0/24");
  req.mutable_service()->add_source_ranges("2001:db8::/32");
  grpc::ClientContext ctx;
  lb::v1::Service created;
  ASSERT_TRUE(stub_->CreateService(&ctx, req, &created).ok());
  EXPECT_THAT(created.source_ranges(), ::testing::ElementsAre("192.0.2.0/24", "2001:db8::/32"));
  req.mutable_service()->mutable_key()->set_port(54);
  req.mutable_service()->add_source_ranges("192.0.2.1/24");
  grpc::ClientContext ctx2;
  const grpc::Status s = stub_->CreateService(&ctx2, req, &created);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("service.source_ranges[2]: \"192.0.2.1/24\" is not a CIDR prefix"));
}

TEST_F(GrpcServiceTest, ApplyThenDrain) {
  lb::v1::ApplyRequest apply;
  apply.set_generation(3);
  *apply.add_services() = Dns();
  grpc::ClientContext ctx;
  lb::v1::ApplyResponse resp;
  ASSERT_TRUE(stub_->Apply(&ctx, apply, &resp).ok());
  EXPECT_EQ(resp.created(), 1u);
  EXPECT_EQ(resp.generation(), 3u);

  lb::v1::UpdateBackendRequest drain;
  *drain.mutable_key() = Dns().key();
  drain.set_address("192.168.1.2");
  drain.set_state(lb::v1::DRAINING);
  grpc::ClientContext ctx2;
  lb::v1::Service out;
  ASSERT_TRUE(stub_->UpdateBackend(&ctx2, drain, &out).ok());
  EXPECT_EQ(out.backends(1).state(), lb::v1::DRAINING);

  grpc::ClientContext ctx3;
  lb::v1::Stats stats;
  lb::v1::GetStatsRequest one_service;
  *one_service.mutable_service() = Dns().key();
  ASSERT_TRUE(stub_->GetStats(&ctx3, one_service, &stats).ok());
  ASSERT_EQ(stats.services_size(), 1);
  ASSERT_EQ(stats.services(0).backends_size(), 2);
  EXPECT_EQ(stats.services(0).backends_total(), 2u);
  EXPECT_EQ(stats.services(0).backends(1).maglev_entries(), 0u);
  EXPECT_EQ(stats.services(0).backends(0).maglev_entries(), 1021u);
  EXPECT_EQ(stats.generation(), 3u);
  EXPECT_EQ(stats.backends(), 2u);
  EXPECT_EQ(stats.table_memory_bytes(), 1021u * 2 + 2 * kBackendRecordBytes);
  EXPECT_GT(stats.table_memory_limit(), 0u);
  EXPECT_EQ(stats.drops_size(), int(dataplane::kNumDropReasons));

  // By default every service's totals and no backend rows; an unknown service is NOT_FOUND.
  grpc::ClientContext ctx4;
  lb::v1::Stats totals;
  ASSERT_TRUE(stub_->GetStats(&ctx4, {}, &totals).ok());
  ASSERT_EQ(totals.services_size(), 1);
  EXPECT_EQ(totals.services(0).backends_size(), 0);
  EXPECT_EQ(totals.services(0).backends_total(), 2u);
  grpc::ClientContext ctx5;
  lb::v1::GetStatsRequest unknown;
  *unknown.mutable_service() = Dns().key();
  unknown.mutable_service()->set_port(5353);
  EXPECT_EQ(stub_->GetStats(&ctx5, unknown, &totals).error_code(), grpc::StatusCode::NOT_FOUND);
}

// A partial Apply reports each service's outcome; a refusal carries its code, field and
// reason, with the field numbered as in the request even when an earlier service did not
// parse at all.
TEST_F(GrpcServiceTest, PartialApplyResults) {
  lb::v1::ApplyRequest apply;
  apply.set_partial(true);
  *apply.add_services() = Dns();
  lb::v1::Service unparsable = Dns();
  unparsable.mutable_key()->set_vip("10.1.0.300");
  *apply.add_services() = unparsable;
  lb::v1::Service bad = Dns();
  bad.mutable_key()->set_vip("10.1.0.11");
  bad.set_table_size(100);
  *apply.add_services() = bad;
  grpc::ClientContext ctx;
  lb::v1::ApplyResponse resp;
  ASSERT_TRUE(stub_->Apply(&ctx, apply, &resp).ok());
  EXPECT_EQ(resp.created(), 1u);
  EXPECT_EQ(resp.refused(), 2u);
  ASSERT_EQ(resp.results_size(), 3);
  EXPECT_EQ(resp.results(0).outcome(), lb::v1::CREATED);
  EXPECT_EQ(resp.results(1).outcome(), lb::v1::REFUSED);
  EXPECT_EQ(resp.results(1).index(), 2);
  EXPECT_EQ(resp.results(1).code(), int(grpc::StatusCode::INVALID_ARGUMENT));
  EXPECT_EQ(resp.results(1).field(), "services[2].table_size");
  EXPECT_THAT(resp.results(1).reason(), HasSubstr("100 must be 0"));
  EXPECT_EQ(resp.results(1).key().vip(), "10.1.0.11");
  EXPECT_EQ(resp.results(2).index(), 1);
  EXPECT_EQ(resp.results(2).field(), "services[1].key.vip");

  // Without `partial` the same request changes nothing.
  apply.set_partial(false);
  grpc::ClientContext ctx2;
  const grpc::Status s = stub_->Apply(&ctx2, apply, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("services[1].key.vip"));
}

TEST_F(GrpcServiceTest, HealthWithoutDataplaneIsUnhealthy) {
  grpc::ClientContext ctx;
  lb::v1::Health h;
  ASSERT_TRUE(stub_->GetHealth(&ctx, {}, &h).ok());
  EXPECT_FALSE(h.healthy());
  EXPECT_THAT(h.problems(0), HasSubstr("no dataplane"));
}

}  // namespace
}  // namespace lb::control
